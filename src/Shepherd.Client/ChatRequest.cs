using System.Text.Json.Nodes;

namespace Shepherd.Client;

/// <summary>
/// A chat request in typed form: a system prompt, the user's message, how long the answer may be,
/// and the shape it must have. <see cref="BatchItem.FromChat"/> turns it into the body of the
/// batch's endpoint: <c>/v1/chat/completions</c> (OpenAI and compatible providers) or
/// <c>/v1/messages</c> (Anthropic), so the same code serves both.
/// </summary>
public sealed record ChatRequest
{
    /// <summary>What the model is told before the conversation; none by default.</summary>
    public string? System { get; init; }

    /// <summary>The user's message.</summary>
    public required string User { get; init; }

    /// <summary>The most tokens the answer may take; the provider's default when null (1,024 for Anthropic, which requires one).</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Sampling temperature; the provider's default when null.</summary>
    public double? Temperature { get; init; }

    /// <summary>The shape the answer must have (OpenAI's <c>response_format</c>); free text when null.</summary>
    public ResponseFormat? ResponseFormat { get; init; }
}

/// <summary>The shape an answer must have, as OpenAI's chat completions take it in <c>response_format</c>.</summary>
public sealed record ResponseFormat
{
    private ResponseFormat(JsonObject wire) => Wire = wire;

    /// <summary>Any JSON object.</summary>
    public static ResponseFormat JsonObject { get; } = new(new System.Text.Json.Nodes.JsonObject { ["type"] = "json_object" });

    /// <summary>JSON that follows <paramref name="schema"/> (a JSON Schema object), named <paramref name="name"/>.</summary>
    public static ResponseFormat JsonSchema(string name, JsonObject schema, bool strict = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(schema);
        return new(new JsonObject
        {
            ["type"] = "json_schema",
            ["json_schema"] = new JsonObject { ["name"] = name, ["schema"] = schema.DeepClone(), ["strict"] = strict },
        });
    }

    /// <summary>The <c>response_format</c> object as it is sent.</summary>
    internal JsonObject Wire { get; }
}
