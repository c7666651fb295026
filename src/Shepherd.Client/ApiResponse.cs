using System.Net.Http.Headers;

namespace Shepherd.Client;

/// <summary>
/// The HTTP answer a value was read from: its status, the id the server gave the call (to quote
/// to its operators), and its headers (a provider's rate-limit headers among them).
/// </summary>
/// <param name="Status">The HTTP status.</param>
/// <param name="RequestId">The server's <c>x-request-id</c> (Anthropic's <c>request-id</c>); null when it sent none.</param>
/// <param name="Headers">Every header of the answer, by name (case-insensitive), values joined with commas.</param>
public sealed record ApiResponse(int Status, string? RequestId, IReadOnlyDictionary<string, string> Headers)
{
    /// <summary>What <paramref name="response"/> says of itself.</summary>
    internal static ApiResponse Of(HttpResponseMessage response)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            headers[name] = string.Join(", ", values);
        }

        return new ApiResponse((int)response.StatusCode, RequestIdOf(response.Headers), headers);
    }

    /// <summary>The id a server gave a call: OpenAI and Shepherd name it <c>x-request-id</c>, Anthropic <c>request-id</c>.</summary>
    internal static string? RequestIdOf(HttpResponseHeaders headers) =>
        headers.TryGetValues("x-request-id", out var ids) || headers.TryGetValues("request-id", out ids) ? ids.FirstOrDefault() : null;
}

/// <summary>A JSON answer and the HTTP answer it came in.</summary>
internal readonly record struct JsonAnswer(System.Text.Json.JsonElement Json, ApiResponse Response);
