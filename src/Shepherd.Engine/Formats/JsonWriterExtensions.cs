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
    public static void WriteNumberOrNull(this Utf8JsonWriter json, string name, long? value) =>
        WriteOrNull(json, name, value, static (writer, field, number) => writer.WriteNumber(field, number));

    /// <summary>Writes <paramref name="value"/>, or <c>null</c> when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter json, string name, double? value) =>
        WriteOrNull(json, name, value, static (writer, field, number) => writer.WriteNumber(field, number));

    /// <summary>Writes <paramref name="value"/>, or <c>null</c> when there is none.</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter json, string name, decimal? value) =>
        WriteOrNull(json, name, value, static (writer, field, number) => writer.WriteNumber(field, number));

    /// <summary>Writes the array <paramref name="name"/>, each of <paramref name="items"/> written by <paramref name="write"/>.</summary>
    public static void WriteArray<T>(this Utf8JsonWriter json, string name, IEnumerable<T> items, Action<Utf8JsonWriter, T> write)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(write);
        json.WriteStartArray(name);
        foreach (var item in items)
        {
            write(json, item);
        }

        json.WriteEndArray();
    }

    /// <summary>
    /// Writes the array <paramref name="name"/> of one object for each of <paramref name="items"/>,
    /// whose fields <paramref name="writeFields"/> writes.
    /// </summary>
    public static void WriteObjects<T>(this Utf8JsonWriter json, string name, IEnumerable<T> items, Action<Utf8JsonWriter, T> writeFields)
    {
        ArgumentNullException.ThrowIfNull(writeFields);
        json.WriteArray(name, items, (writer, item) =>
        {
            writer.WriteStartObject();
            writeFields(writer, item);
            writer.WriteEndObject();
        });
    }

    private static void WriteOrNull<T>(Utf8JsonWriter json, string name, T? value, Action<Utf8JsonWriter, string, T> write)
        where T : struct
    {
        ArgumentNullException.ThrowIfNull(json);
        if (value is { } number)
        {
            write(json, name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
