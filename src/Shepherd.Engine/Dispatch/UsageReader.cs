using System.Text.Json;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// Reads the token usage from an answer of any supported endpoint without building a DOM:
/// OpenAI's <c>prompt_tokens</c>/<c>completion_tokens</c>, and the <c>input_tokens</c>/
/// <c>output_tokens</c> of the Responses API and Anthropic (with Anthropic's cache tokens, which
/// are input too), and of the input, what came from the provider's cache (OpenAI's
/// <c>cached_tokens</c> in the token details, Anthropic's <c>cache_read_input_tokens</c>).
/// </summary>
internal static class UsageReader
{
    /// <summary>Returns false when <paramref name="body"/> is not one JSON document.</summary>
    public static bool TryRead(ReadOnlySpan<byte> body, out int inputTokens, out int outputTokens, out int cachedTokens)
    {
        inputTokens = outputTokens = cachedTokens = 0;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 256 });
            if (!reader.Read())
            {
                return false;
            }

            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                return !reader.Read();
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isUsage = reader.ValueTextEquals("usage"u8);
                reader.Read();
                if (isUsage && reader.TokenType == JsonTokenType.StartObject)
                {
                    ReadUsage(ref reader, ref inputTokens, ref outputTokens, ref cachedTokens);
                }
                else
                {
                    reader.Skip();
                }
            }

            return !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Reads a usage object on its own (a streamed event's), as <see cref="TryRead"/> reads the one in a body.</summary>
    public static (int Input, int Output, int Cached) ReadUsage(ReadOnlySpan<byte> usage)
    {
        int input = 0, output = 0, cached = 0;
        var reader = new Utf8JsonReader(usage);
        if (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            ReadUsage(ref reader, ref input, ref output, ref cached);
        }

        return (input, output, cached);
    }

    private static void ReadUsage(ref Utf8JsonReader reader, ref int input, ref int output, ref int cached)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var cacheRead = reader.ValueTextEquals("cache_read_input_tokens"u8);
            var toInput = cacheRead
                || reader.ValueTextEquals("prompt_tokens"u8)
                || reader.ValueTextEquals("input_tokens"u8)
                || reader.ValueTextEquals("cache_creation_input_tokens"u8);
            var toOutput = !toInput && (reader.ValueTextEquals("completion_tokens"u8) || reader.ValueTextEquals("output_tokens"u8));
            var details = reader.ValueTextEquals("prompt_tokens_details"u8) || reader.ValueTextEquals("input_tokens_details"u8);
            reader.Read();
            if (details && reader.TokenType == JsonTokenType.StartObject)
            {
                cached += CachedIn(ref reader);
                continue;
            }

            if ((toInput || toOutput) && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var count) && count > 0)
            {
                if (toInput)
                {
                    input += count;
                    cached += cacheRead ? count : 0;
                }
                else
                {
                    output += count;
                }
            }

            reader.Skip();
        }
    }

    /// <summary>The <c>cached_tokens</c> of a token-details object; the reader ends on its end.</summary>
    private static int CachedIn(ref Utf8JsonReader reader)
    {
        var cached = 0;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isCached = reader.ValueTextEquals("cached_tokens"u8);
            reader.Read();
            if (isCached && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var count) && count > 0)
            {
                cached = count;
            }

            reader.Skip();
        }

        return cached;
    }
}
