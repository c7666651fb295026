using System.Text;
using System.Text.Json;

namespace Shepherd.Simulator;

/// <summary>
/// What the simulator reads from a request body: the model, the text the model reads (and, of
/// it, the part an Anthropic <c>cache_control</c> marks as a cacheable prefix), the number of
/// messages, the output limit, and whether it asks for the flex tier.
/// </summary>
internal sealed record RequestShape(string Model, string Text, string CacheableText, int Messages, int? MaxTokens, int Dimensions, int Inputs, bool Flex)
{
    /// <summary>True when the request asks for its answer as a stream of events (<c>"stream": true</c>).</summary>
    public bool Stream { get; init; }

    /// <summary>True when an OpenAI stream is asked to end with a chunk of usage (<c>stream_options.include_usage</c>).</summary>
    public bool StreamUsage { get; init; }

    /// <summary>True when an embeddings request asks for <c>"encoding_format": "base64"</c> (the OpenAI SDKs' default): each vector comes as the base64 of its float32 values.</summary>
    public bool Base64 { get; init; }

    /// <summary>What the request asks its answer to be (structured output), or null for free text.</summary>
    public StructuredAsk? Structured { get; init; }

    public static RequestShape? Read(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        var text = new StringBuilder();
        var cacheable = new StringBuilder();
        var messages = 0;
        foreach (var property in root.EnumerateObject())
        {
            if (property.NameEquals("messages") && property.Value.ValueKind == JsonValueKind.Array)
            {
                messages = property.Value.GetArrayLength();
            }

            if (property.NameEquals("messages") || property.NameEquals("system") || property.NameEquals("input")
                || property.NameEquals("prompt") || property.NameEquals("instructions"))
            {
                AppendText(text, property.Value);
                if (property.NameEquals("system") && MarksCache(property.Value))
                {
                    AppendText(cacheable, property.Value);
                }
            }
        }

        int? max = null;
        foreach (var name in (ReadOnlySpan<string>)["max_tokens", "max_completion_tokens", "max_output_tokens"])
        {
            if (root.TryGetProperty(name, out var limit) && limit.TryGetInt32(out var value) && value > 0)
            {
                max = value;
            }
        }

        var dimensions = root.TryGetProperty("dimensions", out var dims) && dims.TryGetInt32(out var d) && d is > 0 and <= 4096 ? d : 8;
        var inputs = root.TryGetProperty("input", out var input) && input.ValueKind == JsonValueKind.Array ? Math.Max(1, input.GetArrayLength()) : 1;
        var flex = root.TryGetProperty("service_tier", out var tier) && tier.ValueKind == JsonValueKind.String && tier.ValueEquals("flex");
        return new RequestShape(model.GetString()!, text.ToString(), cacheable.ToString(), messages, max, dimensions, inputs, flex)
        {
            Stream = root.TryGetProperty("stream", out var stream) && stream.ValueKind == JsonValueKind.True,
            StreamUsage = root.TryGetProperty("stream_options", out var options) && options.ValueKind == JsonValueKind.Object
                && options.TryGetProperty("include_usage", out var usage) && usage.ValueKind == JsonValueKind.True,
            Structured = StructuredAsk.Read(root),
            Base64 = root.TryGetProperty("encoding_format", out var format) && format.ValueKind == JsonValueKind.String && format.ValueEquals("base64"),
        };
    }

    /// <summary>True when a block of <paramref name="system"/> carries a <c>cache_control</c>: the system prompt is a cacheable prefix.</summary>
    private static bool MarksCache(JsonElement system) =>
        system.ValueKind == JsonValueKind.Array
        && system.EnumerateArray().Any(block => block.ValueKind == JsonValueKind.Object && block.TryGetProperty("cache_control", out _));

    private static void AppendText(StringBuilder text, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                text.Append(element.GetString());
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    AppendText(text, item);
                }

                break;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (!property.NameEquals("role") && !property.NameEquals("type") && !property.NameEquals("cache_control"))
                    {
                        AppendText(text, property.Value);
                    }
                }

                break;
        }
    }
}
