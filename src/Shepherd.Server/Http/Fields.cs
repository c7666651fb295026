using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Shepherd.Server.Http;

/// <summary>Reads and checks the fields of bodies and query strings; every refusal names the field.</summary>
internal static class Fields
{
    public const int MaxMetadataPairs = 16;
    public const int MaxMetadataKeyLength = 64;
    public const int MaxMetadataValueLength = 512;

    public static void OnlyKnown(IReadOnlyDictionary<string, JsonElement> fields, params string[] known)
    {
        foreach (var name in fields.Keys)
        {
            if (!known.Contains(name, StringComparer.Ordinal))
            {
                throw ApiException.BadRequest($"Unknown field \"{name}\"; this call takes {string.Join(", ", known.Select(k => $"\"{k}\""))}.", name, "unknown_parameter");
            }
        }
    }

    public static string? String(IReadOnlyDictionary<string, JsonElement> fields, string name, bool required = false)
    {
        if (!fields.TryGetValue(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return required ? throw ApiException.BadRequest($"\"{name}\" is required.", name, "missing_required_parameter") : null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw ApiException.BadRequest($"\"{name}\" must be a string.", name, "invalid_type");
    }

    /// <summary>A true or false field; null when left out.</summary>
    public static bool? Bool(IReadOnlyDictionary<string, JsonElement> fields, string name) =>
        !fields.TryGetValue(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean()
        : throw ApiException.BadRequest($"\"{name}\" must be true or false.", name, "invalid_type");

    /// <summary>A metadata value that says true or false (<c>"true"</c>, <c>"false"</c>); null when left out.</summary>
    public static bool? Bool(IReadOnlyDictionary<string, string>? metadata, string key) =>
        metadata is null || !metadata.TryGetValue(key, out var text) ? null
        : bool.TryParse(text, out var value) ? value
        : throw ApiException.BadRequest($"metadata.{key} \"{text}\" must be \"true\" or \"false\".", "metadata." + key, "invalid_type");

    /// <summary>Up to 16 pairs of strings, keys up to 64 characters, values up to 512.</summary>
    public static Dictionary<string, string>? Metadata(IReadOnlyDictionary<string, JsonElement> fields)
    {
        if (!fields.TryGetValue("metadata", out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadRequest("\"metadata\" must be an object of string values.", "metadata", "invalid_type");
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in value.EnumerateObject())
        {
            if (pair.Value.ValueKind != JsonValueKind.String)
            {
                throw ApiException.BadRequest($"metadata \"{pair.Name}\" must be a string.", "metadata", "invalid_metadata");
            }

            if (pair.Name.Length > MaxMetadataKeyLength)
            {
                throw ApiException.BadRequest($"A metadata key may be at most {MaxMetadataKeyLength} characters long; \"{pair.Name[..16]}…\" has {pair.Name.Length}.", "metadata", "invalid_metadata");
            }

            var text = pair.Value.GetString()!;
            if (text.Length > MaxMetadataValueLength)
            {
                throw ApiException.BadRequest($"metadata \"{pair.Name}\" may be at most {MaxMetadataValueLength} characters long; it has {text.Length}.", "metadata", "invalid_metadata");
            }

            metadata[pair.Name] = text;
        }

        return metadata.Count > MaxMetadataPairs
            ? throw ApiException.BadRequest($"metadata may hold at most {MaxMetadataPairs} pairs; it has {metadata.Count}.", "metadata", "invalid_metadata")
            : metadata;
    }

    /// <summary>The longest deadline a batch may have: ten years.</summary>
    private static readonly TimeSpan MaxWindow = TimeSpan.FromDays(3650);

    /// <summary>A window such as <c>24h</c>, <c>90m</c> or <c>7d</c>; a refusal names <paramref name="field"/>.</summary>
    public static TimeSpan? Window(string? text, string field = "completion_window")
    {
        if (text is null)
        {
            return null;
        }

        var unit = text.Length > 1 ? text[^1] : ' ';
        if (!long.TryParse(text.AsSpan(0, Math.Max(text.Length - 1, 0)), NumberStyles.None, CultureInfo.InvariantCulture, out var amount)
            || amount < 1
            || unit is not ('s' or 'm' or 'h' or 'd'))
        {
            throw ApiException.BadRequest($"{field} \"{text}\" is not a duration such as \"24h\", \"90m\" or \"7d\".", field, "invalid_" + field);
        }

        var seconds = unit switch { 's' => 1m, 'm' => 60m, 'h' => 3600m, _ => 86_400m } * amount;
        return seconds <= (decimal)MaxWindow.TotalSeconds
            ? TimeSpan.FromSeconds((double)seconds)
            : throw ApiException.BadRequest($"{field} \"{text}\" is longer than the longest a batch may take, {MaxWindow.TotalDays:0} days.", field, "invalid_" + field);
    }

    /// <summary>
    /// An inline create's deadline, with the text it is kept and shown as (<c>completion_window</c>):
    /// <c>deadline</c>, a duration (<c>"6h"</c>) or a whole number of seconds (<c>5400</c>, kept as
    /// <c>90m</c>), or the older <c>completion_window</c>; not both. None when neither is given.
    /// </summary>
    public static (TimeSpan? Window, string? Text) Deadline(IReadOnlyDictionary<string, JsonElement> fields)
    {
        var window = String(fields, "completion_window");
        if (!fields.TryGetValue("deadline", out var deadline) || deadline.ValueKind == JsonValueKind.Null)
        {
            return (Window(window), window);
        }

        if (window is not null)
        {
            throw ApiException.BadRequest("Give deadline or completion_window, not both: they are one setting.", "deadline", "invalid_deadline");
        }

        if (deadline.ValueKind == JsonValueKind.String)
        {
            var text = deadline.GetString();
            return (Window(text, "deadline"), text);
        }

        if (deadline.ValueKind != JsonValueKind.Number || !deadline.TryGetInt64(out var seconds) || seconds < 1 || seconds > MaxWindow.TotalSeconds)
        {
            throw ApiException.BadRequest($"deadline {deadline.GetRawText()} is neither a duration such as \"6h\" nor a whole number of seconds from 1 to {MaxWindow.TotalSeconds:0}.", "deadline", "invalid_deadline");
        }

        var shown = seconds % 86_400 == 0 ? $"{seconds / 86_400}d" : seconds % 3_600 == 0 ? $"{seconds / 3_600}h" : seconds % 60 == 0 ? $"{seconds / 60}m" : $"{seconds}s";
        return (TimeSpan.FromSeconds(seconds), shown);
    }

    public static int Int(IQueryCollection query, string name, int fallback, int min, int max)
    {
        var text = query[name].ToString();
        if (text.Length == 0)
        {
            return fallback;
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw ApiException.BadRequest($"{name} must be a whole number from {min} to {max}; it is \"{text}\".", name, "invalid_parameter");
    }

    /// <summary>A duration in seconds (fractions allowed), 0 when absent; more than an hour is refused, as no wait is held that long.</summary>
    public static TimeSpan Seconds(IQueryCollection query, string name)
    {
        var text = query[name].ToString();
        if (text.Length == 0)
        {
            return TimeSpan.Zero;
        }

        return double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) && value <= 3600
            ? TimeSpan.FromSeconds(value)
            : throw ApiException.BadRequest($"{name} must be a number of seconds from 0 to 3600; it is \"{text}\".", name, "invalid_parameter");
    }

    public static long Long(IQueryCollection query, string name)
    {
        var text = query[name].ToString();
        if (text.Length == 0)
        {
            return 0;
        }

        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw ApiException.BadRequest($"{name} must be a whole number of 0 or more; it is \"{text}\".", name, "invalid_parameter");
    }

    public static string? Text(IQueryCollection query, string name) => query[name].ToString() is { Length: > 0 } text ? text : null;

    /// <summary>The <c>Idempotency-Key</c> header: up to 255 printable characters.</summary>
    public static string? IdempotencyKey(HttpRequest request)
    {
        var key = request.Headers["Idempotency-Key"].ToString().Trim();
        if (key.Length == 0)
        {
            return null;
        }

        return key.Length <= 255 && key.All(c => c is >= ' ' and <= '~')
            ? key
            : throw ApiException.BadRequest("The Idempotency-Key header must be 1 to 255 printable ASCII characters.", "Idempotency-Key", "invalid_idempotency_key");
    }
}
