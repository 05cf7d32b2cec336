"""Project configuration package (settings, URLs, WSGI/ASGI entry points)."""
