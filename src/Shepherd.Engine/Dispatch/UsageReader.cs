using System.Text.Json;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// Reads the token usage from an answer of any supported endpoint without building a DOM:
/// OpenAI's <c>prompt_tokens</c>/<c>completion_tokens</c>, and the <c>input_tokens</c>/
/// <c>output_tokens</c> of the Responses API and Anthropic (with Anthropic's cache tokens, which
/// are input too).
/// </summary>
internal static class UsageReader
{
    /// <summary>Returns false when <paramref name="body"/> is not one JSON document.</summary>
    public static bool TryRead(ReadOnlySpan<byte> body, out int inputTokens, out int outputTokens)
    {
        inputTokens = outputTokens = 0;
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
                    ReadUsage(ref reader, ref inputTokens, ref outputTokens);
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

    private static void ReadUsage(ref Utf8JsonReader reader, ref int input, ref int output)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var toInput = reader.ValueTextEquals("prompt_tokens"u8)
                || reader.ValueTextEquals("input_tokens"u8)
                || reader.ValueTextEquals("cache_creation_input_tokens"u8)
                || reader.ValueTextEquals("cache_read_input_tokens"u8);
            var toOutput = !toInput && (reader.ValueTextEquals("completion_tokens"u8) || reader.ValueTextEquals("output_tokens"u8));
            reader.Read();
            if ((toInput || toOutput) && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var count) && count > 0)
            {
                if (toInput)
                {
                    input += count;
                }
                else
                {
                    output += count;
                }
            }

            reader.Skip();
        }
    }
}
