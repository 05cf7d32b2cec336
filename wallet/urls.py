"""Wallet URLs."""

app_name = "wallet"
urlpatterns = []
