using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Server.Http;

/// <summary>Errors in the envelope of each door, with the types its SDKs map to exceptions.</summary>
internal static class ErrorEnvelope
{
    public static JsonBody For(BatchDoor door, int status, string message, string? param = null, string? code = null) =>
        door == BatchDoor.Anthropic
            ? new JsonBody(json =>
            {
                json.WriteStartObject();
                json.WriteString("type", "error");
                json.WriteStartObject("error");
                // A conflict (deleting a batch still running, an idempotency key reused) is a bad request in this dialect.
                json.WriteString("type", status is StatusCodes.Status409Conflict or StatusCodes.Status422UnprocessableEntity ? "invalid_request_error" : ResultLineWriter.AnthropicErrorType(status));
                json.WriteString("message", message);
                json.WriteEndObject();
                json.WriteEndObject();
            }, status)
            : new JsonBody(json =>
            {
                json.WriteStartObject();
                json.WriteStartObject("error");
                json.WriteString("message", message);
                json.WriteString("type", OpenAIType(status));
                json.WriteString("param", param);
                json.WriteString("code", code ?? OpenAICode(status));
                json.WriteEndObject();
                json.WriteEndObject();
            }, status);

    private static string OpenAIType(int status) => status switch
    {
        StatusCodes.Status401Unauthorized => "invalid_request_error",
        StatusCodes.Status429TooManyRequests => "rate_limit_exceeded",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    private static string? OpenAICode(int status) => status switch
    {
        StatusCodes.Status401Unauthorized => "invalid_api_key",
        StatusCodes.Status404NotFound => "not_found",
        StatusCodes.Status413PayloadTooLarge => "request_too_large",
        >= 500 => "server_error",
        _ => null,
    };
}
