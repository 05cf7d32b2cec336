"""Receiving big recipient lists on the send page: a pasted list is read like an uploaded file.

Django keeps a form's text fields in memory and refuses a request whose text fields
exceed DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with a bare "Bad Request (400)" page, which
loses the whole form; 100,000 pasted addresses are about 4 MB. Uploaded files have no
such limit: Django spools them to a temporary file. So on the send page, and only there,
the pasted list's part of the request gets a file name on its way into Django's parser
(PastedListAsFile), and both the pasted and the uploaded list are cut off at
max_list_bytes() (ListSizeLimit): a bigger one is skipped and reported on the form, which
keeps every other field. Every other field, and every other page, keeps Django's limits.

Upload handlers must be set before anything reads request.POST, and the CSRF middleware
reads it: the view is csrf_exempt and checks the token with csrf_protect once the
handlers are in place (Django's documented way, "Modifying upload handlers on the fly").
"""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http.multipartparser import MultiPartParser

#: Bytes a list may take per recipient allowed (a long name and address and a comma).
BYTES_PER_RECIPIENT = 100


def max_list_bytes():
    """The largest pasted or uploaded list the send page takes (20 MB by default)."""
    return settings.EMAIL_MAX_RECIPIENTS * BYTES_PER_RECIPIENT


def install(request, pasted_field, list_fields):
    """Set up the request's upload handlers: `pasted_field` (a text area) arrives as a file,
    and the files of `list_fields` are skipped beyond max_list_bytes(), their names then
    in request.oversize_lists. Call it before anything reads request.POST."""
    request.oversize_lists = set()
    request.upload_handlers.insert(0, ListSizeLimit(request, list_fields))
    request.upload_handlers.insert(0, PastedListAsFile(request, pasted_field))


class PastedListAsFile(FileUploadHandler):
    """Parses the request itself, with Django's parser and the other handlers, over a
    stream in which `field`'s part is declared a file (its Content-Disposition gains a
    filename). Only browsers' exact header is renamed (the HTML standard's
    multipart/form-data encoding, which Django's test client follows too); a client that
    writes it otherwise gets Django's usual limit."""

    FILE_NAME = "pasted-list.txt"

    def __init__(self, request, field):
        super().__init__(request)
        self.field = field

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        others = [handler for handler in self.request.upload_handlers if handler is not self]
        header = b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n' % (
            boundary,
            self.field.encode("ascii"),
        )
        renamed = header[:-2] + b'; filename="%s"\r\n' % self.FILE_NAME.encode("ascii")
        stream = _Renaming(input_data, header, renamed)
        return MultiPartParser(META, stream, others, encoding).parse()

    # Never called: handle_raw_input parses the whole request.
    def receive_data_chunk(self, raw_data, start):
        return raw_data

    def file_complete(self, file_size):
        return None


class ListSizeLimit(FileUploadHandler):
    """Skips a file of `fields` once it grows beyond max_list_bytes(), so that neither
    memory nor the temporary directory holds more; notes its field in
    request.oversize_lists. The rest of the request is parsed as usual."""

    def __init__(self, request, fields):
        super().__init__(request)
        self.fields = set(fields)
        self.limit = max_list_bytes()

    def receive_data_chunk(self, raw_data, start):
        if self.field_name in self.fields and start + len(raw_data) > self.limit:
            self.request.oversize_lists.add(self.field_name)
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size):
        return None


class _Renaming:
    """A read-only stream: `stream` with every `header` replaced by `renamed`.

    Keeps back the last len(header) - 1 bytes read, which may be the start of a header
    the next read completes. `header` starts with the multipart boundary, which by
    definition occurs nowhere in the parts' contents, so it cannot match inside them.
    """

    def __init__(self, stream, header, renamed):
        self._stream = stream
        self._header = header
        self._renamed = renamed
        self._tail = b""

    def read(self, size=-1):
        while True:
            chunk = self._stream.read(size if size and size > 0 else 64 * 1024)
            if not chunk:
                rest, self._tail = self._tail, b""
                return rest
            data = (self._tail + chunk).replace(self._header, self._renamed)
            cut = max(0, len(data) - (len(self._header) - 1))
            out, self._tail = data[:cut], data[cut:]
            if out:
                return out
