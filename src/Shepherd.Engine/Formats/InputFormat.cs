namespace Shepherd.Engine.Formats;

/// <summary>The dialect of a batch input file, which is also the dialect of its results.</summary>
public enum InputFormat
{
    /// <summary>OpenAI batch lines: <c>custom_id, method, url, body</c>.</summary>
    OpenAI,

    /// <summary>Anthropic message batch lines: <c>custom_id, params</c>.</summary>
    Anthropic,
}

/// <summary>The request urls a batch line may name.</summary>
public static class BatchEndpoints
{
    /// <summary>OpenAI chat completions.</summary>
    public const string ChatCompletions = "/v1/chat/completions";

    /// <summary>OpenAI embeddings.</summary>
    public const string Embeddings = "/v1/embeddings";

    /// <summary>OpenAI legacy completions.</summary>
    public const string Completions = "/v1/completions";

    /// <summary>OpenAI responses.</summary>
    public const string Responses = "/v1/responses";

    /// <summary>Anthropic messages.</summary>
    public const string Messages = "/v1/messages";

    /// <summary>Every url a batch line may name, in the order they are documented.</summary>
    public static IReadOnlyList<string> All { get; } = [ChatCompletions, Embeddings, Completions, Responses, Messages];

    /// <summary>Returns the canonical instance of a known url, or null for an unknown one.</summary>
    public static string? Find(ReadOnlySpan<char> url)
    {
        foreach (var known in All)
        {
            if (url.SequenceEqual(known))
            {
                return known;
            }
        }

        return null;
    }
}
