using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Json.Schema;

namespace Shepherd.Engine.Formats;

/// <summary>What a request asks its answer to be: any JSON object, or one that fits a JSON Schema.</summary>
public sealed class OutputContract
{
    private readonly IReadOnlyDictionary<string, string> _kinds;

    private OutputContract(JsonSchema? schema, string? tool, IReadOnlyList<string> fields, IReadOnlyDictionary<string, string> kinds)
    {
        Schema = schema;
        Tool = tool;
        Fields = fields;
        _kinds = kinds;
    }

    /// <summary>The schema the answer must fit; null when any JSON object will do (<c>json_object</c>).</summary>
    public JsonSchema? Schema { get; }

    /// <summary>For an Anthropic request that makes the model call a tool: the tool whose input is the answer.</summary>
    public string? Tool { get; }

    /// <summary>The schema's top-level properties in the order it gives them (a table's columns); empty without a schema.</summary>
    public IReadOnlyList<string> Fields { get; }

    /// <summary>How a field's values are written in a table: string, integer, number, boolean as the schema types it; json for anything else.</summary>
    public string FieldKind(string field) => _kinds.GetValueOrDefault(field, "json");

    /// <summary>A contract of any JSON object.</summary>
    internal static OutputContract AnyObject { get; } = new(null, null, [], new Dictionary<string, string>());

    /// <summary>A contract of <paramref name="schema"/> (raw JSON), built once per distinct schema and kept.</summary>
    internal static OutputContract For(JsonElement schema, string? tool) => StructuredOutput.Built(schema, tool);

    internal static OutputContract Of(JsonSchema schema, string? tool, IReadOnlyList<string> fields, IReadOnlyDictionary<string, string> kinds) => new(schema, tool, fields, kinds);
}

/// <summary>How an answer stands against its request's <see cref="OutputContract"/>.</summary>
public enum OutputVerdict
{
    /// <summary>It parses and fits.</summary>
    Valid,

    /// <summary>The part that should be JSON is not JSON (or is missing: a refusal, no tool call).</summary>
    NotJson,

    /// <summary>It parses but does not fit the schema (or is not an object where one was asked for).</summary>
    Invalid,

    /// <summary>The schema cannot be followed for it (a <c>$ref</c> that leads nowhere): it is kept as it came, unchecked.</summary>
    Unchecked,
}

/// <summary>An answer checked against its contract: the verdict, what is wrong in words (each with where), and the structured part's JSON when it parsed.</summary>
/// <param name="Verdict">Whether it parsed and fits.</param>
/// <param name="Errors">What is wrong, each naming where (a JSON Pointer into the answer); empty when valid.</param>
/// <param name="Json">The structured part as JSON text, when it parsed.</param>
public sealed record OutputCheck(OutputVerdict Verdict, IReadOnlyList<string> Errors, string? Json);

/// <summary>
/// Structured output: which requests ask for it (OpenAI <c>response_format</c> of type
/// <c>json_schema</c> or <c>json_object</c>, the Responses API's <c>text.format</c>, Anthropic's
/// forced tool use with its <c>input_schema</c>), where the structured part of each dialect's answer
/// is, and whether it parses and fits. Schemas are checked with JsonSchema.Net, which implements
/// draft 2020-12 completely; each distinct schema is built once and kept.
/// </summary>
public static class StructuredOutput
{
    /// <summary>The most distinct schemas kept built; past it the kept ones are dropped and built again as they come.</summary>
    private const int MaxKept = 256;

    private static readonly ConcurrentDictionary<string, OutputContract> Kept = new(StringComparer.Ordinal);

    private static readonly EvaluationOptions Detailed = new() { OutputFormat = OutputFormat.List };

    /// <summary>A yes or no, which is all most answers need: the details are asked for only of one that fails.</summary>
    private static readonly EvaluationOptions Verdict = new() { OutputFormat = OutputFormat.Flag };

    /// <summary>
    /// The contract <paramref name="body"/> (a request to <paramref name="url"/>) asks for; the
    /// batch's <paramref name="fallback"/> for one that asks for none; null for free text.
    /// </summary>
    /// <exception cref="JsonSchemaException">The request's schema is not a schema.</exception>
    public static OutputContract? Of(string url, ReadOnlySpan<byte> body, OutputContract? fallback = null)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (fallback is null && body.IndexOf("\"response_format\""u8) < 0 && body.IndexOf("\"format\""u8) < 0 && body.IndexOf("\"tool_choice\""u8) < 0)
        {
            // Most requests ask for free text: they are told apart without being parsed.
            return null;
        }

        var reader = new Utf8JsonReader(body);
        if (!JsonDocument.TryParseValue(ref reader, out var document))
        {
            return fallback;
        }

        using (document)
        {
            var root = document.RootElement;
            return root.ValueKind == JsonValueKind.Object ? Asked(url, root) ?? fallback : fallback;
        }
    }

    private static OutputContract? Asked(string url, JsonElement root)
    {
        switch (url)
        {
            case BatchEndpoints.ChatCompletions:
                return Format(Property(root, "response_format"), nested: true);
            case BatchEndpoints.Responses:
                return Format(Property(Property(root, "text"), "format"), nested: false);
            case BatchEndpoints.Messages:
                return ForcedTool(root);
            default:
                return null;
        }
    }

    /// <summary>An OpenAI format: <c>json_object</c>, or <c>json_schema</c> with its schema (under <c>json_schema</c> in chat, beside the type in the Responses API).</summary>
    private static OutputContract? Format(JsonElement format, bool nested)
    {
        var type = Property(format, "type");
        if (type.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        if (type.ValueEquals("json_object"))
        {
            return OutputContract.AnyObject;
        }

        var schema = Property(nested ? Property(format, "json_schema") : format, "schema");
        return type.ValueEquals("json_schema") && schema.ValueKind is JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False
            ? OutputContract.For(schema, null)
            : null;
    }

    /// <summary>An Anthropic request that makes the model call one tool (<c>tool_choice</c> of that tool, or "any" with one tool): its input is the answer.</summary>
    private static OutputContract? ForcedTool(JsonElement root)
    {
        var tools = Property(root, "tools");
        var choice = Property(root, "tool_choice");
        if (tools.ValueKind != JsonValueKind.Array || Property(choice, "type") is not { ValueKind: JsonValueKind.String } type)
        {
            return null;
        }

        string? name = null;
        if (type.ValueEquals("tool") && Property(choice, "name") is { ValueKind: JsonValueKind.String } chosen)
        {
            name = chosen.GetString();
        }
        else if (type.ValueEquals("any") && tools.GetArrayLength() == 1)
        {
            name = Str(Property(tools[0], "name"));
        }

        foreach (var tool in tools.EnumerateArray())
        {
            if (name is not null && Property(tool, "name") is { ValueKind: JsonValueKind.String } toolName && toolName.ValueEquals(name)
                && Property(tool, "input_schema") is { ValueKind: JsonValueKind.Object } schema)
            {
                return OutputContract.For(schema, name);
            }
        }

        return null;
    }

    /// <summary>The contract of a batch-level schema (given once for every request of a batch).</summary>
    /// <exception cref="JsonSchemaException">It is not a schema.</exception>
    public static OutputContract ForSchema(JsonElement schema) => OutputContract.For(schema, null);

    internal static OutputContract Built(JsonElement schema, string? tool)
    {
        var raw = schema.GetRawText();
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(raw))) + "|" + tool;
        if (Kept.TryGetValue(key, out var known))
        {
            return known;
        }

        if (Kept.Count >= MaxKept)
        {
            Kept.Clear();
        }

        // A registry of its own: schemas of different batches may share an $id, and nothing is kept beyond this contract.
        // Built from a copy of its own: the schema keeps the JSON it was built from, which the request's document outlives.
        JsonSchema built;
        try
        {
            built = JsonSchema.Build(schema.Clone(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        }
        catch (ArgumentException ex)
        {
            // A keyword's value the library reads further, such as a pattern that is no regular expression.
            throw new JsonSchemaException(ex.Message, ex);
        }

        if (Unresolved(schema) is { } reference)
        {
            // The library follows a $ref only when an answer reaches it: one that leads nowhere is refused here, once.
            throw new JsonSchemaException($"its \"$ref\": \"{reference}\" leads nowhere in it (answers are checked against the schema alone; other documents are not fetched)");
        }

        var properties = schema.ValueKind == JsonValueKind.Object && Property(schema, "properties") is { ValueKind: JsonValueKind.Object } given
            ? given.EnumerateObject().ToList()
            : [];
        var kinds = properties.ToDictionary(p => p.Name, p => KindOf(p.Value), StringComparer.Ordinal);
        return Kept[key] = OutputContract.Of(built, tool, [.. properties.Select(p => p.Name)], kinds);
    }

    /// <summary>
    /// The first <c>$ref</c> of <paramref name="root"/> that leads nowhere in it: a JSON Pointer
    /// (<c>#/$defs/x</c>) to nothing, or another document, unless an <c>$id</c> of the schema names it.
    /// </summary>
    private static string? Unresolved(JsonElement root)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var references = new List<string>();
        Collect(root, ids, references);
        foreach (var reference in references)
        {
            var hash = reference.IndexOf('#', StringComparison.Ordinal);
            var (document, fragment) = hash < 0 ? (reference, "") : (reference[..hash], reference[(hash + 1)..]);
            if (document.Length > 0 && !ids.Contains(document))
            {
                return reference;
            }

            if (document.Length == 0 && fragment.StartsWith('/') && !Leads(root, fragment))
            {
                return reference;
            }
        }

        return null;
    }

    private static void Collect(JsonElement element, HashSet<string> ids, List<string> references)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (property.Value.ValueKind == JsonValueKind.String && property.NameEquals("$ref"))
                    {
                        references.Add(property.Value.GetString()!);
                    }
                    else if (property.Value.ValueKind == JsonValueKind.String && property.NameEquals("$id"))
                    {
                        ids.Add(property.Value.GetString()!.TrimEnd('#'));
                    }
                    else
                    {
                        Collect(property.Value, ids, references);
                    }
                }

                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    Collect(item, ids, references);
                }

                break;
        }
    }

    /// <summary>Whether the JSON Pointer <paramref name="pointer"/> (<c>/$defs/x</c>) names a value in <paramref name="root"/>.</summary>
    private static bool Leads(JsonElement root, string pointer)
    {
        var at = root;
        foreach (var part in pointer.Split('/')[1..])
        {
            var name = Uri.UnescapeDataString(part).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (at.ValueKind == JsonValueKind.Object && at.TryGetProperty(name, out var next))
            {
                at = next;
            }
            else if (at.ValueKind == JsonValueKind.Array && int.TryParse(name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index) && index < at.GetArrayLength())
            {
                at = at[index];
            }
            else
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>How a table writes a field the schema types: its one type (or its one type beside null), string for an enum of strings, json otherwise.</summary>
    private static string KindOf(JsonElement field)
    {
        var type = Property(field, "type");
        var types = type.ValueKind switch
        {
            JsonValueKind.String => [type.GetString()!],
            JsonValueKind.Array => type.EnumerateArray().Where(t => t.ValueKind == JsonValueKind.String && !t.ValueEquals("null")).Select(t => t.GetString()!).ToList(),
            _ => Property(field, "enum") is { ValueKind: JsonValueKind.Array } choices && choices.EnumerateArray().All(c => c.ValueKind == JsonValueKind.String) ? ["string"] : [],
        };
        return types.Count == 1 && types[0] is "string" or "integer" or "number" or "boolean" ? types[0] : "json";
    }

    /// <summary>Checks the answer <paramref name="answer"/> (the provider's 2xx body for <paramref name="url"/>) against <paramref name="contract"/>.</summary>
    public static OutputCheck Check(OutputContract contract, string url, ReadOnlySpan<byte> answer)
    {
        ArgumentNullException.ThrowIfNull(contract);
        ArgumentNullException.ThrowIfNull(url);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(answer.ToArray());
        }
        catch (JsonException)
        {
            return new OutputCheck(OutputVerdict.NotJson, ["the provider's answer is not JSON"], null);
        }

        using var owned = document;
        var part = Part(contract, url, document.RootElement);
        if (part.Refused is { } refusal)
        {
            return new OutputCheck(OutputVerdict.NotJson, [refusal], null);
        }

        JsonDocument parsed;
        if (part.Json is { } json)
        {
            parsed = JsonDocument.Parse(json.GetRawText());
        }
        else
        {
            try
            {
                parsed = JsonDocument.Parse(part.Text ?? "");
            }
            catch (JsonException ex)
            {
                return new OutputCheck(OutputVerdict.NotJson, [$"the answer is not JSON: {ex.Message}"], null);
            }
        }

        using (parsed)
        {
            var value = parsed.RootElement;
            var text = value.GetRawText();
            if (contract.Schema is not { } schema)
            {
                return value.ValueKind == JsonValueKind.Object
                    ? new OutputCheck(OutputVerdict.Valid, [], text)
                    : new OutputCheck(OutputVerdict.Invalid, [$"the answer is JSON but not an object: it is {Kind(value)}"], text);
            }

            try
            {
                return schema.Evaluate(value, Verdict).IsValid
                    ? new OutputCheck(OutputVerdict.Valid, [], text)
                    : new OutputCheck(OutputVerdict.Invalid, Errors(schema.Evaluate(value, Detailed)), text);
            }
            catch (Exception ex) when (ex is RefResolutionException or JsonSchemaException or ArgumentException or InvalidOperationException)
            {
                // A schema the provider took but that cannot be followed here: the answer is not held against it.
                return new OutputCheck(OutputVerdict.Unchecked, [$"the schema cannot be followed: {ex.Message}"], text);
            }
        }
    }

    /// <summary>
    /// The answer's text as a reader wants it (chat's message content, a completion's text, the
    /// Responses API's output text, a message's text, or a forced tool's input as JSON), and, when
    /// that text is a JSON object, the object: what a table's columns of fields are read from.
    /// </summary>
    public static (string? Text, JsonElement? Object) AnswerOf(string url, JsonElement answer, OutputContract? contract)
    {
        ArgumentNullException.ThrowIfNull(url);
        var part = Part(contract ?? OutputContract.AnyObject, url, answer);
        if (part.Json is { } json)
        {
            return (json.GetRawText(), json.ValueKind == JsonValueKind.Object ? json.Clone() : null);
        }

        var text = part.Text ?? part.Refused;
        if (text is null || !text.AsSpan().TrimStart().StartsWith("{"))
        {
            return (text, null);
        }

        try
        {
            using var parsed = JsonDocument.Parse(text);
            return (text, parsed.RootElement.ValueKind == JsonValueKind.Object ? parsed.RootElement.Clone() : null);
        }
        catch (JsonException)
        {
            return (text, null);
        }
    }

    /// <summary>
    /// The answer's structured part: an Anthropic tool's input (already JSON), or the text that
    /// should be JSON (chat's message content, a completion's text, the Responses API's output
    /// text, a message's text); or the model's refusal.
    /// </summary>
    private static (JsonElement? Json, string? Text, string? Refused) Part(OutputContract contract, string url, JsonElement answer)
    {
        switch (url)
        {
            case BatchEndpoints.Messages:
                var content = Property(answer, "content");
                var texts = new StringBuilder();
                foreach (var block in content.ValueKind == JsonValueKind.Array ? content.EnumerateArray() : default)
                {
                    var type = Property(block, "type");
                    if (contract.Tool is { } tool && Is(type, "tool_use") && Is(Property(block, "name"), tool))
                    {
                        return (Property(block, "input"), null, null);
                    }

                    if (Is(type, "text"))
                    {
                        texts.Append(Str(Property(block, "text")));
                    }
                }

                return contract.Tool is { } wanted
                    ? (null, null, $"the model did not call the tool {wanted}{(texts.Length > 0 ? $"; it answered: {Cut(texts.ToString())}" : "")}")
                    : (null, texts.ToString(), null);
            case BatchEndpoints.Responses:
                var output = new StringBuilder();
                foreach (var item in Property(answer, "output") is { ValueKind: JsonValueKind.Array } items ? items.EnumerateArray() : default)
                {
                    foreach (var piece in Property(item, "content") is { ValueKind: JsonValueKind.Array } pieces ? pieces.EnumerateArray() : default)
                    {
                        if (Is(Property(piece, "type"), "refusal"))
                        {
                            return (null, null, $"the model refused: {Str(Property(piece, "refusal"))}");
                        }

                        if (Is(Property(piece, "type"), "output_text"))
                        {
                            output.Append(Str(Property(piece, "text")));
                        }
                    }
                }

                return (null, output.ToString(), null);
            default:
                var choice = Property(answer, "choices") is { ValueKind: JsonValueKind.Array } choices && choices.GetArrayLength() > 0 ? choices[0] : default;
                var message = Property(choice, "message");
                if (Property(message, "refusal") is { ValueKind: JsonValueKind.String } refusal)
                {
                    return (null, null, $"the model refused: {refusal.GetString()}");
                }

                return (null, Str(Property(message, "content")) ?? Str(Property(choice, "text")), null);
        }
    }

    /// <summary>What failed, each at its place in the answer: "/features/1: Value is "integer" but should be "string"".</summary>
    private static List<string> Errors(EvaluationResults result)
    {
        var errors = new List<string>();
        foreach (var detail in result.Details ?? [])
        {
            foreach (var (keyword, message) in detail.Errors ?? new Dictionary<string, string>())
            {
                var where = detail.InstanceLocation.ToString();
                var said = keyword.Length == 0 && message.Contains("false schema", StringComparison.Ordinal)
                    ? "a property the schema does not allow"
                    : message;
                errors.Add($"{(where.Length == 0 ? "/" : where)}: {said}");
            }
        }

        return errors.Count > 0 ? errors : ["the answer does not fit the schema"];
    }

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static string Cut(string text) => text.Length <= 200 ? text : text[..200] + "…";

    private static bool Is(JsonElement element, string value) => element.ValueKind == JsonValueKind.String && element.ValueEquals(value);

    private static string? Str(JsonElement element) => element.ValueKind == JsonValueKind.String ? element.GetString() : null;

    private static JsonElement Property(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) ? value : default;
}
