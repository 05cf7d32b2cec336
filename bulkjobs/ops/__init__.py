"""Operations: job services (cancel, retry), alerts, health, retention, log redaction, command bases."""
