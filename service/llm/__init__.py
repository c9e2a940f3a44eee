"""The Anthropic SDK behind a small interface; knows nothing of RQ or Flask.

Import from the modules themselves: the API reads the price table and the request schemas
without importing the SDK (`client`), which costs a second or more at start-up.
"""
