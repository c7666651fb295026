using System.Buffers;
using System.Text.Json;
using System.Text.Unicode;

namespace Shepherd.Engine.Formats;

/// <summary>
/// Finds JSON that a reader passes but that holds no text: invalid UTF-8, or an escaped lone
/// surrogate (<c>"\ud800"</c>). The reader checks only the strings it is asked to decode, so a
/// value passed on unread must be checked here before anything decodes it.
/// </summary>
public static class JsonText
{
    /// <summary>
    /// What is wrong with the text of <paramref name="json"/> (a whole JSON value, already read
    /// once with <paramref name="options"/>), or null; <paramref name="at"/> is the 0-based byte.
    /// </summary>
    public static string? Problem(ReadOnlySpan<byte> json, JsonReaderOptions options, out long at)
    {
        at = 0;
        if (!Utf8.IsValid(json))
        {
            at = FirstInvalid(json);
            return "a string holds bytes that are not valid UTF-8";
        }

        // Only an escape can name a surrogate: raw UTF-8 that passed above holds none alone.
        if (json.IndexOf("\\u"u8) < 0)
        {
            return null;
        }

        var reader = new Utf8JsonReader(json, options);
        while (reader.Read())
        {
            if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped && !Decodes(ref reader))
            {
                at = reader.TokenStartIndex;
                return "a string holds an escaped lone surrogate, which is not valid Unicode";
            }
        }

        return null;
    }

    private static bool Decodes(ref Utf8JsonReader reader)
    {
        var buffer = ArrayPool<char>.Shared.Rent(reader.ValueSpan.Length);
        try
        {
            reader.CopyString(buffer);
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
        finally
        {
            ArrayPool<char>.Shared.Return(buffer);
        }
    }

    private static int FirstInvalid(ReadOnlySpan<byte> json)
    {
        Utf8.ToUtf16(json, new char[json.Length], out var valid, out _, replaceInvalidSequences: false);
        return valid;
    }
}
