"""The upload size limit, enforced while the request body is parsed, before it is stored."""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from tagger.errors import PayloadTooLarge


class UploadLimitHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: refuses a body over TAGGER_MAX_UPLOAD_BYTES.

    A declared Content-Length over the limit is refused before any byte is read. Without a
    usable length the bytes are counted as they arrive, and parsing stops at the limit; Django
    then closes (and so deletes) the temporary file the later handlers had started.
    """

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = settings.TAGGER_MAX_UPLOAD_BYTES
        self.received = 0
        self.exceeded = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.limit:
            raise self._too_large(f"The upload is {content_length} bytes")

    def new_file(self, *args, **kwargs):
        pass

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None

    def upload_complete(self):
        if self.exceeded:
            raise self._too_large("The upload is larger than that")

    def _too_large(self, what: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{what}; the limit is {self.limit} bytes.", extra={"limit": self.limit}
        )
