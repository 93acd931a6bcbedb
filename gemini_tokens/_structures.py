"""The nested structures a setup holds: content (parts, blobs), tools, the avatar.

Data only, like `_models` (which builds the config classes from these): frozen, keyword-only
attrs classes whose fields are all optional, ``None`` meaning "not set". They mirror the
official SDK's ``google.genai.types`` (the fields it sends to the Developer API), so a dict
written for one works with the other. On the wire every field name is camelCase; the values
of ``Mapping`` fields marked as user data (function arguments, MCP headers, part metadata)
are sent as written.

Fields the official SDK refuses for the Developer API (Vertex-only ones) are not here:
the converter refuses them by name, saying why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gemini_tokens._enums import (
    Behavior,
    CodeExecutionOutcome,
    CodeLanguage,
    DynamicRetrievalMode,
    Environment,
    FunctionResponseScheduling,
    PartMediaResolutionLevel,
)

__all__ = [
    "AudioMetadata",
    "AvatarConfig",
    "Blob",
    "CodeExecution",
    "CodeExecutionResult",
    "Compact",
    "ComputerUse",
    "Content",
    "CustomizedAvatar",
    "DocumentMetadata",
    "DynamicRetrievalConfig",
    "ExecutableCode",
    "FileData",
    "FileSearch",
    "FunctionCall",
    "FunctionDeclaration",
    "FunctionResponse",
    "GoogleMaps",
    "GoogleSearch",
    "GoogleSearchRetrieval",
    "ImageSearch",
    "Interval",
    "McpServer",
    "Part",
    "PartMediaResolution",
    "SearchTypes",
    "SpreadsheetMetadata",
    "StreamableHttpTransport",
    "Tool",
    "UrlContext",
    "VideoMetadata",
    "WebSearch",
]


class Compact:
    """Mixin: a repr that shows only the fields that are set."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in attrs.fields(type(self))  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        )
        return f"{type(self).__name__}({shown})"


# --- content ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class Blob(Compact):
    """Inline bytes, base64-encoded as the API expects."""

    mime_type: str | None = None
    data: str | None = None
    display_name: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class FileData(Compact):
    """A reference to an uploaded file."""

    mime_type: str | None = None
    file_uri: str | None = None
    display_name: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class FunctionCall(Compact):
    """A function call the model made. ``args`` is user data, sent as written."""

    id: str | None = None
    name: str | None = None
    args: Mapping[str, Any] | None = None
    will_continue: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class FunctionResponse(Compact):
    """The result of a function call. ``response`` is user data, sent as written."""

    id: str | None = None
    name: str | None = None
    response: Mapping[str, Any] | None = None
    will_continue: bool | None = None
    scheduling: FunctionResponseScheduling | None = None


@attrs.frozen(kw_only=True, repr=False)
class ExecutableCode(Compact):
    """Code the model wrote for the code-execution tool."""

    code: str | None = None
    language: CodeLanguage | None = None
    id: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class CodeExecutionResult(Compact):
    """What running `ExecutableCode` gave."""

    outcome: CodeExecutionOutcome | None = None
    output: str | None = None
    id: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class VideoMetadata(Compact):
    """Which part of a video a part covers (offsets as durations, e.g. ``"1.5s"``)."""

    start_offset: str | None = None
    end_offset: str | None = None
    fps: float | None = None


@attrs.frozen(kw_only=True, repr=False)
class PartMediaResolution(Compact):
    """The tokenization quality of one part's media."""

    level: PartMediaResolutionLevel | None = None
    num_tokens: int | None = None


@attrs.frozen(kw_only=True, repr=False)
class DocumentMetadata(Compact):
    """Which pages of a document a part covers."""

    start_page: int | None = None
    end_page: int | None = None


@attrs.frozen(kw_only=True, repr=False)
class SpreadsheetMetadata(Compact):
    """Which cells of a spreadsheet a part covers."""

    visible_cells: str | None = None
    sheet_index: int | None = None


@attrs.frozen(kw_only=True, repr=False)
class AudioMetadata(Compact):
    """Which part of an audio file a part covers (offsets as durations)."""

    start_offset: str | None = None
    end_offset: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class Part(Compact):
    """One part of a `Content`. A plain string is accepted as a text part."""

    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    executable_code: ExecutableCode | None = None
    code_execution_result: CodeExecutionResult | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    video_metadata: VideoMetadata | None = None
    media_resolution: PartMediaResolution | None = None
    part_metadata: Mapping[str, Any] | None = None
    document_metadata: DocumentMetadata | None = None
    spreadsheet_metadata: SpreadsheetMetadata | None = None
    audio_metadata: AudioMetadata | None = None


@attrs.frozen(kw_only=True, repr=False)
class Content(Compact):
    """A system instruction or a turn.

    As ``system_instruction`` a string, a part, or a list of strings and parts is accepted
    too: it becomes ``Content(parts=..., role="user")``.
    """

    parts: Sequence[Part] | None = None
    role: str | None = None


# --- tools ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class FunctionDeclaration(Compact):
    """A function the model may call.

    ``parameters`` and ``response`` are OpenAPI-style schemas (``{"type": "OBJECT", ...}``);
    their keywords are camelCased on the wire but property names are sent as written.
    ``parameters_json_schema`` and ``response_json_schema`` are plain JSON Schema, sent verbatim.
    """

    name: str | None = None
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    parameters_json_schema: Any = None
    response: Mapping[str, Any] | None = None
    response_json_schema: Any = None
    behavior: Behavior | None = None


@attrs.frozen(kw_only=True, repr=False)
class WebSearch(Compact):
    """Search the web (``google_search.search_types.web_search``); no settings."""


@attrs.frozen(kw_only=True, repr=False)
class ImageSearch(Compact):
    """Search images (``google_search.search_types.image_search``); no settings."""


@attrs.frozen(kw_only=True, repr=False)
class SearchTypes(Compact):
    """Which kinds of Google Search to run."""

    web_search: WebSearch | None = None
    image_search: ImageSearch | None = None


@attrs.frozen(kw_only=True, repr=False)
class Interval(Compact):
    """A time range (aware datetimes; sent as RFC 3339 in UTC)."""

    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None


@attrs.frozen(kw_only=True, repr=False)
class GoogleSearch(Compact):
    """The Google Search tool."""

    search_types: SearchTypes | None = None
    time_range_filter: Interval | None = None


@attrs.frozen(kw_only=True, repr=False)
class DynamicRetrievalConfig(Compact):
    """When Google Search retrieval runs."""

    mode: DynamicRetrievalMode | None = None
    dynamic_threshold: float | None = None


@attrs.frozen(kw_only=True, repr=False)
class GoogleSearchRetrieval(Compact):
    """The Google Search retrieval tool (older models)."""

    dynamic_retrieval_config: DynamicRetrievalConfig | None = None


@attrs.frozen(kw_only=True, repr=False)
class GoogleMaps(Compact):
    """The Google Maps grounding tool."""

    enable_widget: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class CodeExecution(Compact):
    """The code-execution tool; no settings."""


@attrs.frozen(kw_only=True, repr=False)
class UrlContext(Compact):
    """The URL-context tool; no settings."""


@attrs.frozen(kw_only=True, repr=False)
class ComputerUse(Compact):
    """The computer-use tool."""

    environment: Environment | None = None
    excluded_predefined_functions: Sequence[str] | None = None


@attrs.frozen(kw_only=True, repr=False)
class FileSearch(Compact):
    """Search in File Search stores."""

    file_search_store_names: Sequence[str] | None = None
    top_k: int | None = None
    metadata_filter: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class StreamableHttpTransport(Compact):
    """How to reach an MCP server. ``headers`` is user data: its keys are sent as written."""

    url: str | None = None
    headers: Mapping[str, str] | None = None
    timeout: str | None = None
    sse_read_timeout: str | None = None
    terminate_on_close: bool | None = None


@attrs.frozen(kw_only=True, repr=False)
class McpServer(Compact):
    """An MCP server whose tools the model may call."""

    name: str | None = None
    streamable_http_transport: StreamableHttpTransport | None = None


@attrs.frozen(kw_only=True, repr=False)
class Tool(Compact):
    """A tool the model may use: function declarations or one of the built-in tools."""

    function_declarations: Sequence[FunctionDeclaration] | None = None
    google_search: GoogleSearch | None = None
    google_search_retrieval: GoogleSearchRetrieval | None = None
    google_maps: GoogleMaps | None = None
    code_execution: CodeExecution | None = None
    url_context: UrlContext | None = None
    computer_use: ComputerUse | None = None
    file_search: FileSearch | None = None
    mcp_servers: Sequence[McpServer] | None = None


# --- the avatar -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, repr=False)
class CustomizedAvatar(Compact):
    """An avatar made from an image (``image_data`` base64-encoded)."""

    image_mime_type: str | None = None
    image_data: str | None = None


@attrs.frozen(kw_only=True, repr=False)
class AvatarConfig(Compact):
    """The avatar that speaks in a session."""

    avatar_name: str | None = None
    customized_avatar: CustomizedAvatar | None = None
    audio_bitrate_bps: int | None = None
    video_bitrate_bps: int | None = None
