using System.Text.Json;

namespace Shepherd.Engine.Formats;

/// <summary>Writing helpers the JSON documents of every door share.</summary>
public static class JsonWriterExtensions
{
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
