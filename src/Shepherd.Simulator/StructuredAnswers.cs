using System.Text;
using System.Text.Json;

namespace Shepherd.Simulator;

/// <summary>What a request asks its answer to be: any JSON object, one that fits a schema, or a forced tool's input.</summary>
/// <param name="Schema">The schema (a copy of its own); null for any object (<c>json_object</c>).</param>
/// <param name="Tool">For an Anthropic request that forces a tool: its name, and the answer is its <c>tool_use</c> input.</param>
internal sealed record StructuredAsk(JsonElement? Schema, string? Tool)
{
    /// <summary>What <paramref name="root"/> (a request to any endpoint) asks for, or null for free text.</summary>
    public static StructuredAsk? Read(JsonElement root)
    {
        // OpenAI chat: response_format; the Responses API: text.format.
        if (Property(root, "response_format") is { ValueKind: JsonValueKind.Object } chat)
        {
            return Format(chat, Property(chat, "json_schema"));
        }

        if (Property(Property(root, "text"), "format") is { ValueKind: JsonValueKind.Object } responses)
        {
            return Format(responses, responses);
        }

        var choice = Property(root, "tool_choice");
        if (Property(choice, "type") is { ValueKind: JsonValueKind.String } type && type.ValueEquals("tool")
            && Property(choice, "name") is { ValueKind: JsonValueKind.String } name && Property(root, "tools") is { ValueKind: JsonValueKind.Array } tools)
        {
            foreach (var tool in tools.EnumerateArray())
            {
                if (Property(tool, "name") is { ValueKind: JsonValueKind.String } toolName && toolName.ValueEquals(name.GetString())
                    && Property(tool, "input_schema") is { ValueKind: JsonValueKind.Object } schema)
                {
                    return new StructuredAsk(schema.Clone(), name.GetString());
                }
            }
        }

        return null;
    }

    private static StructuredAsk? Format(JsonElement format, JsonElement holder)
    {
        var type = Property(format, "type");
        if (type.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        if (type.ValueEquals("json_object"))
        {
            return new StructuredAsk(null, null);
        }

        return type.ValueEquals("json_schema") && Property(holder, "schema") is { ValueKind: JsonValueKind.Object } schema
            ? new StructuredAsk(schema.Clone(), null)
            : null;
    }

    internal static JsonElement Property(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) ? value : default;
}

/// <summary>How a structured answer comes out: fitting, not JSON at all, or JSON that breaks the schema.</summary>
internal enum StructuredFate
{
    Valid,

    /// <summary>Cut off midway, or wrapped in words: it does not parse.</summary>
    BrokenJson,

    /// <summary>It parses, but a required field is missing, a value has the wrong type, or there is a field the schema forbids.</summary>
    BreaksSchema,
}

/// <summary>
/// The simulator's structured answers: JSON made from the request's schema (objects with their
/// properties, enums, consts, types, arrays, <c>$ref</c>s into <c>$defs</c>, the first of an
/// <c>anyOf</c>), the same seed giving the same answer; and, in the shares the options give,
/// JSON that does not parse or breaks the schema.
/// </summary>
internal static class StructuredAnswers
{
    private static readonly string[] Words = ["battery", "fit", "price", "screen", "sound", "comfort", "design", "setup", "quality", "service"];

    /// <summary>What <c>json_object</c> asks for: any object.</summary>
    private static readonly JsonElement AnyObject = JsonDocument.Parse("""{"type":"object"}""").RootElement.Clone();

    /// <summary>The answer's JSON text for <paramref name="ask"/>.</summary>
    public static string Make(StructuredAsk ask, ulong seed, StructuredFate fate)
    {
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        var schema = ask.Schema ?? AnyObject;
        // A tool's input is always an object: it may break the schema, never JSON itself.
        if (fate == StructuredFate.BreaksSchema || (fate == StructuredFate.BrokenJson && ask.Tool is not null))
        {
            return Breaking(schema, random);
        }

        var valid = Write(json => Value(json, schema, schema, random, 0));
        if (fate != StructuredFate.BrokenJson)
        {
            return valid;
        }

        // Half are cut off where the output ran out; half come with words around them.
        return random.Next(2) == 0 ? valid[..Math.Max(1, valid.Length / 2)] : $"Here is the JSON you asked for:\n{valid}";
    }

    /// <summary>JSON that parses but does not fit: a required field left out, else a value of the wrong type, else a field the schema does not allow, else not an object.</summary>
    private static string Breaking(JsonElement schema, Random random)
    {
        var properties = StructuredAsk.Property(schema, "properties");
        var required = StructuredAsk.Property(schema, "required") is { ValueKind: JsonValueKind.Array } names
            ? names.EnumerateArray().Where(n => n.ValueKind == JsonValueKind.String).Select(n => n.GetString()!).ToList()
            : [];
        if (properties.ValueKind != JsonValueKind.Object)
        {
            // Nothing to leave out or mistype: not even an object.
            return "[\"not an object\"]";
        }

        var leftOut = required.Count > 0 ? required[random.Next(required.Count)] : null;
        return Write(json =>
        {
            json.WriteStartObject();
            var broken = leftOut is not null;
            foreach (var property in properties.EnumerateObject())
            {
                if (property.Name == leftOut)
                {
                    continue;
                }

                json.WritePropertyName(property.Name);
                if (!broken)
                {
                    // A string where the schema wants anything else, a number where it wants a string.
                    if (Type(property.Value) == "string" || StructuredAsk.Property(property.Value, "enum").ValueKind == JsonValueKind.Array)
                    {
                        json.WriteNumberValue(42);
                    }
                    else
                    {
                        json.WriteStringValue("not a " + (Type(property.Value) ?? "value"));
                    }

                    broken = true;
                    continue;
                }

                Value(json, property.Value, schema, random, 1);
            }

            if (!broken)
            {
                json.WriteBoolean("unexpected_field", true);
            }

            json.WriteEndObject();
        });
    }

    private static void Value(Utf8JsonWriter json, JsonElement schema, JsonElement root, Random random, int depth)
    {
        if (StructuredAsk.Property(schema, "$ref") is { ValueKind: JsonValueKind.String } reference && Resolve(root, reference.GetString()!) is { } target)
        {
            schema = target;
        }

        if (StructuredAsk.Property(schema, "const") is { ValueKind: not JsonValueKind.Undefined } constant)
        {
            constant.WriteTo(json);
            return;
        }

        if (StructuredAsk.Property(schema, "enum") is { ValueKind: JsonValueKind.Array } choices && choices.GetArrayLength() > 0)
        {
            choices[random.Next(choices.GetArrayLength())].WriteTo(json);
            return;
        }

        foreach (var union in (ReadOnlySpan<string>)["anyOf", "oneOf"])
        {
            if (StructuredAsk.Property(schema, union) is { ValueKind: JsonValueKind.Array } options && options.GetArrayLength() > 0)
            {
                // Deep in a recursive schema, the last choice (often null) ends it.
                Value(json, options[depth > 3 ? options.GetArrayLength() - 1 : 0], root, random, depth + 1);
                return;
            }
        }

        switch (Type(schema))
        {
            case "object" or null when StructuredAsk.Property(schema, "properties") is { ValueKind: JsonValueKind.Object } properties:
                json.WriteStartObject();
                foreach (var property in properties.EnumerateObject())
                {
                    json.WritePropertyName(property.Name);
                    Value(json, property.Value, root, random, depth + 1);
                }

                json.WriteEndObject();
                break;
            case "object":
                json.WriteStartObject();
                json.WriteString("answer", Words[random.Next(Words.Length)]);
                json.WriteEndObject();
                break;
            case "array":
                json.WriteStartArray();
                var items = StructuredAsk.Property(schema, "items");
                var count = Math.Max(Bound(schema, "minItems") is { } min ? (int)min : 0, depth > 3 ? 0 : 1 + random.Next(3));
                count = Bound(schema, "maxItems") is { } most ? Math.Min(count, (int)most) : count;
                for (var i = 0; i < count; i++)
                {
                    Value(json, items, root, random, depth + 1);
                }

                json.WriteEndArray();
                break;
            case "integer":
                var (low, high) = Range(schema, 1, 99);
                var lowest = (long)Math.Ceiling(low);
                json.WriteNumberValue(lowest + (long)(random.NextDouble() * Math.Max(0, Math.Floor(high) - lowest + 1)));
                break;
            case "number":
                var (from, to) = Range(schema, 0, 100);
                json.WriteNumberValue(Math.Clamp(Math.Round(from + (random.NextDouble() * (to - from)), 2), from, to));
                break;
            case "boolean":
                json.WriteBooleanValue(random.Next(2) == 0);
                break;
            case "null":
                json.WriteNullValue();
                break;
            default:
                var word = Words[random.Next(Words.Length)];
                var shortest = Bound(schema, "minLength") is { } minLength ? (int)minLength : 0;
                while (word.Length < shortest)
                {
                    word += " " + Words[random.Next(Words.Length)];
                }

                json.WriteStringValue(Bound(schema, "maxLength") is { } maxLength && word.Length > maxLength ? word[..(int)maxLength] : word);
                break;
        }
    }

    /// <summary>A number the schema gives under <paramref name="name"/>, or null.</summary>
    private static double? Bound(JsonElement schema, string name) =>
        StructuredAsk.Property(schema, name) is { ValueKind: JsonValueKind.Number } bound ? bound.GetDouble() : null;

    /// <summary>The values a number may take: the schema's bounds (an exclusive one a step inside), else from <paramref name="low"/> to <paramref name="high"/> about what bound there is.</summary>
    private static (double Low, double High) Range(JsonElement schema, double low, double high)
    {
        var min = Bound(schema, "minimum") ?? (Bound(schema, "exclusiveMinimum") is { } above ? above + 1 : null);
        var max = Bound(schema, "maximum") ?? (Bound(schema, "exclusiveMaximum") is { } below ? below - 1 : null);
        var span = high - low;
        return (min ?? (max is { } top ? top - span : low), max ?? (min is { } bottom ? bottom + span : high));
    }

    /// <summary>The schema's type; of a list of types, the first that is not null.</summary>
    private static string? Type(JsonElement schema) => StructuredAsk.Property(schema, "type") switch
    {
        { ValueKind: JsonValueKind.String } one => one.GetString(),
        { ValueKind: JsonValueKind.Array } many => many.EnumerateArray().Select(t => t.GetString()).FirstOrDefault(t => t != "null") ?? "null",
        _ => null,
    };

    /// <summary>A <c>$ref</c> within the schema (<c>#/$defs/x</c>, <c>#/definitions/x</c>, <c>#</c>).</summary>
    private static JsonElement? Resolve(JsonElement root, string reference)
    {
        if (!reference.StartsWith('#'))
        {
            return null;
        }

        var at = root;
        foreach (var part in reference[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            at = StructuredAsk.Property(at, part.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal));
            if (at.ValueKind == JsonValueKind.Undefined)
            {
                return null;
            }
        }

        return at;
    }

    private static string Write(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            write(json);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
