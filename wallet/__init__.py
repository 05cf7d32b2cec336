"""Bulk Apple Wallet and Google Wallet sync of business cards."""
