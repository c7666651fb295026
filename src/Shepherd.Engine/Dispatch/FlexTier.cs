using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// The provider's flex tier as the dispatcher uses it: the same endpoint and lane as realtime,
/// with <c>"service_tier": "flex"</c> in the body, at the batch price; the provider may refuse
/// a flex request with a 429 <c>resource_unavailable</c> when it has no capacity for it.
/// </summary>
internal static class FlexTier
{
    /// <summary><paramref name="body"/> with <c>service_tier</c> set to <c>flex</c> (over one the caller set); a body that is not a JSON object goes as it is.</summary>
    public static byte[] Body(byte[] body)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(body);
        }
        catch (JsonException)
        {
            return body;
        }

        if (node is not JsonObject request)
        {
            return body;
        }

        request["service_tier"] = "flex";
        using var buffer = new MemoryStream(body.Length + 24);
        using (var json = new Utf8JsonWriter(buffer, Formats.JsonWriterExtensions.Options))
        {
            request.WriteTo(json);
        }

        return buffer.ToArray();
    }

    /// <summary>
    /// True when a 429 is the provider's refusal for want of flex capacity, not a rate limit: its
    /// error's code, type or message says the resource is unavailable. It tells nothing of the
    /// lane's limits.
    /// </summary>
    public static bool IsRefusal(UpstreamResponse response) =>
        response.StatusCode == 429 && AttemptClassifier.ErrorOf(response.Body ?? []) is { } error
        && new[] { error.Code, error.Type, error.Message }.Any(text =>
            text is not null && (text.Contains("resource_unavailable", StringComparison.OrdinalIgnoreCase) || text.Contains("resource unavailable", StringComparison.OrdinalIgnoreCase)));
}
