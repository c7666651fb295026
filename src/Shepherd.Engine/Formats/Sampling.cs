using System.Text.Json;

namespace Shepherd.Engine.Formats;

/// <summary>Whether a request asks its provider to draw its answer at random.</summary>
public static class Sampling
{
    /// <summary>
    /// True when <paramref name="body"/> (a request body, a JSON object) asks for sampling: a
    /// top-level <c>temperature</c> above 0, or <c>n</c> above 1. A body that leaves the
    /// temperature out takes the provider's default and does not ask; nor does one that is not JSON.
    /// </summary>
    public static bool IsAsked(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var temperature = reader.ValueTextEquals("temperature"u8);
                var choices = reader.ValueTextEquals("n"u8);
                reader.Read();
                if (reader.TokenType == JsonTokenType.Number
                    && ((temperature && reader.TryGetDouble(out var degrees) && degrees > 0) || (choices && reader.TryGetDouble(out var count) && count > 1)))
                {
                    return true;
                }

                reader.Skip();
            }
        }
        catch (JsonException)
        {
            // Not JSON: nothing it asks for can be read.
        }

        return false;
    }
}
