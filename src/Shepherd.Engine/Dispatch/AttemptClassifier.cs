using System.Text;
using System.Text.Json;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>Whether an attempt succeeded, failed for good, or may succeed if tried again.</summary>
internal enum Verdict
{
    Success,
    Permanent,
    Transient,
}

/// <summary>An attempt's verdict with the result to record and the wait the upstream asked for.</summary>
internal readonly record struct Classified(Verdict Verdict, AttemptResult Result, TimeSpan? RetryAfter);

/// <summary>
/// Classifies an upstream answer once, where it is seen: 2xx with a JSON body succeeds;
/// 408, 409, 429, 5xx and 529 (or whatever <c>x-should-retry</c> says) are transient; every
/// other status is permanent. The answer body is kept; one that is not JSON is wrapped in the
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
        return new Classified(IsTransient(status, response.ShouldRetry) ? Verdict.Transient : Verdict.Permanent, error, response.RetryAfter);
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
        using (var json = new Utf8JsonWriter(buffer))
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
        using (var json = new Utf8JsonWriter(buffer))
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
