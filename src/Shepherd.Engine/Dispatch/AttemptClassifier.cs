using System.Text;
using System.Text.Json;
using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Dispatch;

/// <summary>Whether an attempt succeeded, failed for good, may succeed if tried again, or was refused for the key.</summary>
internal enum Verdict
{
    Success,
    Permanent,
    Transient,

    /// <summary>
    /// The upstream refused the credentials (401, 403, or an authentication or permission error):
    /// the answer says nothing about the request, so the request waits and its lane stops.
    /// </summary>
    Refused,

    /// <summary>
    /// A 2xx answer that does not parse as the JSON its request asked for, or does not fit its
    /// schema: the upstream worked (its lane learns nothing bad), and the request is asked again
    /// while it has re-asks left.
    /// </summary>
    Unfit,
}

/// <summary>An attempt's verdict with the result to record and the wait the upstream asked for.</summary>
internal readonly record struct Classified(Verdict Verdict, AttemptResult Result, TimeSpan? RetryAfter);

/// <summary>
/// Classifies an upstream answer once, where it is seen: 2xx with a JSON body succeeds;
/// 401, 403 and any answer whose error is an authentication or permission error are refusals
/// of the key; 408, 409, 429, 5xx and 529 (or whatever <c>x-should-retry</c> says) are
/// transient; every other status is permanent. The answer body is kept; one that is not JSON is wrapped in the
/// upstream's own error envelope, so every result line holds JSON.
/// </summary>
internal static class AttemptClassifier
{
    private const int MaxQuotedBodyChars = 2000;

    public static Classified Classify(UpstreamResponse response, UpstreamKind kind)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (response.StatusCode is not { } status)
        {
            var failure = new AttemptResult { ErrorCode = response.FailureCode, ErrorMessage = response.FailureMessage };
            return new Classified(Verdict.Transient, failure, null);
        }

        var body = response.Body ?? [];
        if (status is >= 200 and < 300)
        {
            if (!UsageReader.TryRead(body, out var input, out var output, out var cached))
            {
                var invalid = new AttemptResult
                {
                    ErrorCode = FailureCodes.InvalidResponse,
                    ErrorMessage = $"the upstream answered HTTP {status} with a body that is not JSON",
                    RequestId = response.RequestId,
                };
                return new Classified(Verdict.Transient, invalid, response.RetryAfter);
            }

            var success = new AttemptResult { StatusCode = status, RequestId = response.RequestId, Body = OnOneLine(body), InputTokens = input, OutputTokens = output, CachedTokens = cached };
            return new Classified(Verdict.Success, success, null);
        }

        var error = new AttemptResult
        {
            StatusCode = status,
            RequestId = response.RequestId,
            Body = UsageReader.TryRead(body, out _, out _, out _) ? OnOneLine(body) : WrapInEnvelope(body, status, kind),
        };
        var verdict = IsRefusal(status, body) ? Verdict.Refused
            : IsTransient(status, response.ShouldRetry) ? Verdict.Transient
            : Verdict.Permanent;
        return new Classified(verdict, error, response.RetryAfter);
    }

    /// <summary>
    /// 401 and 403, and a 4xx whose error names the credentials: Anthropic's
    /// <c>authentication_error</c> and <c>permission_error</c>, OpenAI's <c>invalid_api_key</c>.
    /// </summary>
    private static bool IsRefusal(int status, byte[] body) =>
        status is 401 or 403
        || (status is >= 400 and < 500 && ErrorOf(body) is { } error
            && (error.Type is "authentication_error" or "permission_error" || error.Code is "invalid_api_key"));

    /// <summary>The message of an error body in the OpenAI or Anthropic shape (<c>{"error":{"message":…}}</c>), or null.</summary>
    public static string? MessageOf(byte[]? body) => body is null ? null : ErrorOf(body)?.Message;

    /// <summary>The type, code and message of an error body in the OpenAI or Anthropic shape, or null.</summary>
    public static (string? Type, string? Code, string? Message)? ErrorOf(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("error", out var error) || error.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            static string? Text(JsonElement error, string name) =>
                error.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
            return (Text(error, "type"), Text(error, "code"), Text(error, "message"));
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The status codes worth another attempt, unless the upstream says otherwise.</summary>
    public static bool IsTransient(int status, bool? shouldRetry) =>
        shouldRetry ?? status is 408 or 409 or 429 or >= 500;

    /// <summary>
    /// A JSON body without line breaks, so it can be embedded in a JSONL line. Breaks can only
    /// be whitespace between tokens (a JSON string cannot hold a raw one), so re-writing the
    /// document compactly removes them without changing its meaning.
    /// </summary>
    private static byte[] OnOneLine(byte[] body)
    {
        if (body.AsSpan().IndexOfAny((byte)'\n', (byte)'\r') < 0)
        {
            return body;
        }

        using var document = JsonDocument.Parse(body);
        using var buffer = new MemoryStream(body.Length);
        using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
        {
            document.WriteTo(json);
        }

        return buffer.ToArray();
    }

    private static byte[] WrapInEnvelope(byte[] body, int status, UpstreamKind kind)
    {
        var text = Encoding.UTF8.GetString(body);
        if (text.Length > MaxQuotedBodyChars)
        {
            text = text[..MaxQuotedBodyChars] + "…";
        }

        var message = text.Length == 0 ? $"HTTP {status} with an empty body" : text;
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
        {
            json.WriteStartObject();
            if (kind == UpstreamKind.Anthropic)
            {
                json.WriteString("type", "error");
                json.WriteStartObject("error");
                json.WriteString("type", "api_error");
                json.WriteString("message", message);
                json.WriteEndObject();
            }
            else
            {
                json.WriteStartObject("error");
                json.WriteString("message", message);
                json.WriteString("type", "upstream_error");
                json.WriteNull("param");
                json.WriteNull("code");
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        return buffer.ToArray();
    }
}
