using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// Counts the prompt tokens of a request body with a real tokenizer: o200k for current OpenAI
/// models (and, as the closest public vocabulary, for other vendors' models), cl100k for the
/// GPT-4 and GPT-3.5 generation. Only the text a model reads is counted (messages, system,
/// input, prompt, instructions), plus the few tokens of chat formatting per message.
/// </summary>
public sealed class TokenEstimator
{
    private const int TokensPerMessage = 3;
    private const int TokensPerReply = 3;
    private readonly Lazy<Tokenizer> _o200k = new(() => TiktokenTokenizer.CreateForEncoding("o200k_base"));
    private readonly Lazy<Tokenizer> _cl100k = new(() => TiktokenTokenizer.CreateForEncoding("cl100k_base"));

    /// <summary>
    /// The prompt tokens of <paramref name="body"/> and the output limit it names
    /// (<c>max_tokens</c>, <c>max_completion_tokens</c> or <c>max_output_tokens</c>); zero and
    /// null for a body that is not a JSON object.
    /// </summary>
    public (int PromptTokens, int? MaxOutputTokens) Estimate(string model, ReadOnlySpan<byte> body)
    {
        ArgumentNullException.ThrowIfNull(model);
        var tokenizer = UsesCl100k(model) ? _cl100k.Value : _o200k.Value;
        var reader = new Utf8JsonReader(body);
        try
        {
            using var document = JsonDocument.ParseValue(ref reader);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return (0, null);
            }

            var tokens = 0;
            int? maxOutput = null;
            foreach (var property in root.EnumerateObject())
            {
                if ((property.NameEquals("max_tokens") || property.NameEquals("max_completion_tokens") || property.NameEquals("max_output_tokens"))
                    && property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetInt32(out var max) && max >= 0)
                {
                    maxOutput = max;
                }

                if (property.NameEquals("messages") && property.Value.ValueKind == JsonValueKind.Array)
                {
                    tokens += TokensPerReply;
                    foreach (var message in property.Value.EnumerateArray())
                    {
                        tokens += TokensPerMessage + Count(tokenizer, message);
                    }
                }
                else if (property.NameEquals("system") || property.NameEquals("input") || property.NameEquals("prompt") || property.NameEquals("instructions"))
                {
                    tokens += Count(tokenizer, property.Value);
                }
            }

            return (tokens, maxOutput);
        }
        catch (JsonException)
        {
            return (0, null);
        }
    }

    private static bool UsesCl100k(string model) =>
        model.StartsWith("gpt-4-", StringComparison.Ordinal) || model == "gpt-4" || model.StartsWith("gpt-3.5", StringComparison.Ordinal)
        || model.StartsWith("text-embedding-3", StringComparison.Ordinal) || model.StartsWith("text-embedding-ada", StringComparison.Ordinal);

    private static int Count(Tokenizer tokenizer, JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => tokenizer.CountTokens(element.GetString()!),
        JsonValueKind.Array => element.EnumerateArray().Sum(e => Count(tokenizer, e)),
        // Roles, content types and ids are formatting, not text the model reads as prompt.
        JsonValueKind.Object => element.EnumerateObject()
            .Where(p => !p.NameEquals("role") && !p.NameEquals("type") && !p.NameEquals("id") && !p.NameEquals("tool_call_id"))
            .Sum(p => Count(tokenizer, p.Value)),
        _ => 0,
    };
}
