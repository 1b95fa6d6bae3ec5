"""The knowledge base: solutions agents find, suggest, link to tickets and send to customers."""
