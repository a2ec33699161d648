"""Backups of what destructive commands remove (``--backup FILE``) and ``restore``.

``file_format`` is the file (records framed with a marker, a length and a checksum, each
compressed on its own, so a damaged one costs only itself), ``writer`` the one way a
backend keeps entries before it removes them (each chunk on disk before its entries go),
``reader`` the one way a file is read back (``restore``, ``restore --list``)."""
