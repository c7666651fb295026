using System.Text.Encodings.Web;
using System.Text.Json;

namespace Shepherd.Engine.Formats;

/// <summary>Writing helpers the JSON documents of every door share.</summary>
public static class JsonWriterExtensions
{
    /// <summary>
    /// How every document Shepherd writes escapes text: only what JSON requires, so a custom id
    /// <c>it's</c> stays <c>it's</c> in results, errors and API answers, not <c>it\u0027s</c>. The
    /// documents are JSON served as JSON, never inlined into HTML, where the stricter default matters.
    /// </summary>
    public static JsonWriterOptions Options { get; } = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes <paramref name="value"/>, or <c>null</c> when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter json, string name, long? value)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    /// <summary>Writes <paramref name="value"/>, or <c>null</c> when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter json, string name, double? value)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    /// <summary>Writes <paramref name="value"/>, or <c>null</c> when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter json, string name, decimal? value)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
