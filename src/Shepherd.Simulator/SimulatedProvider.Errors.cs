using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace Shepherd.Simulator;

/// <summary>The error answers, in each dialect's envelope, and the writer every answer is built with.</summary>
public sealed partial class SimulatedProvider
{
    /// <summary>The endpoints with a flex tier: OpenAI's chat completions, completions and responses.</summary>
    private static bool HasFlexTier(string endpoint) => endpoint is "/v1/chat/completions" or "/v1/completions" or "/v1/responses";

    private static SimulatedResponse RateLimited(bool anthropic, TimeSpan wait, List<KeyValuePair<string, string>> headers, long cost)
    {
        var milliseconds = Math.Max(1, (long)Math.Ceiling(wait.TotalMilliseconds));
        headers.Add(new("retry-after", Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture)));
        headers.Add(new("retry-after-ms", milliseconds.ToString(CultureInfo.InvariantCulture)));
        return Error(429, anthropic, "rate_limit_error",
            $"Rate limit reached (this request counts {cost} tokens). Please try again in {milliseconds}ms.", headers, "rate_limit_exceeded");
    }

    /// <summary>
    /// A flex request refused for want of capacity. Not a rate limit: no rate-limit headers, no
    /// <c>retry-after</c>, so a client does not read it as a limit it has reached.
    /// </summary>
    private SimulatedResponse FlexUnavailable(ulong seed) =>
        Error(429, anthropic: false, "resource_unavailable",
            "Flex capacity is not available right now. Try again later, or send the request at the default service tier.",
            [new("x-request-id", $"req_{seed:x16}{Interlocked.Read(ref _requestCount):x}")], "resource_unavailable");

    private static SimulatedResponse InternalError(bool anthropic, List<KeyValuePair<string, string>> headers) =>
        Error(500, anthropic, "api_error", "The server had an error while processing your request.", headers);

    /// <summary>An error answer: Anthropic's <c>{"type":"error","error":{type,message}}</c>, or OpenAI's <c>{"error":{message,type,param,code}}</c> with all four keys.</summary>
    internal static SimulatedResponse Error(
        int status, bool anthropic, string type, string message, List<KeyValuePair<string, string>>? headers = null, string? code = null, string? param = null)
    {
        var body = Write(json =>
        {
            json.WriteStartObject();
            if (anthropic)
            {
                json.WriteString("type", "error");
                json.WriteStartObject("error");
                json.WriteString("type", type);
                json.WriteString("message", message);
                json.WriteEndObject();
            }
            else
            {
                json.WriteStartObject("error");
                json.WriteString("message", message);
                // OpenAI's rate-limit errors name the limit reached as their type.
                json.WriteString("type", type == "rate_limit_error" ? "requests" : type);
                json.WriteString("param", param);
                json.WriteString("code", code);
                json.WriteEndObject();
            }

            json.WriteEndObject();
        });
        return new SimulatedResponse(status, headers ?? [], body);
    }

    /// <summary>The headers of a 5xx answer, with a <c>retry-after</c> when the options ask for one.</summary>
    private List<KeyValuePair<string, string>> WithRetryAfter(List<KeyValuePair<string, string>> headers)
    {
        if (_options.ErrorRetryAfter is { } wait)
        {
            headers.Add(new("retry-after", ((long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture)));
            headers.Add(new("retry-after-ms", ((long)wait.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)));
        }

        return headers;
    }

    /// <summary>The bytes <paramref name="write"/> writes as JSON.</summary>
    internal static byte[] Write(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            write(json);
        }

        return buffer.WrittenSpan.ToArray();
    }
}
