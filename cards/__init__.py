"""Companies, their members and their digital business cards."""
