"""Project configuration package (settings, URLs, WSGI/ASGI entry points)."""

try:
    # PyMySQL stands in for mysqlclient so MariaDB/MySQL work without C headers on
    # shared hosting; Django's mysql backend then imports it as MySQLdb.
    import pymysql

    pymysql.install_as_MySQLdb()
except ImportError:  # pragma: no cover - only when MySQL support is not installed
    pass
