"""The Telegram bot (aiogram 3): routers per feature, the notifier and the daily digest."""
