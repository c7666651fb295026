using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Shepherd.Testing;

/// <summary>One body of <see cref="HostileBodies"/>: where the hostile token sits, what it is, and the bytes.</summary>
public sealed record HostileBody(string Position, string Token, byte[] Bytes)
{
    public override string ToString() => $"{Token} at {Position}";
}

/// <summary>
/// Bodies that a server must refuse (or accept) without faulting: a valid JSON document with one
/// of its values, or one of its property names, replaced by a hostile token. Strings get invalid
/// UTF-8 and lone surrogates; values also get numbers no type holds and nesting past any limit.
/// </summary>
public static class HostileBodies
{
    private const string Marker = "hostile-7f3a9c";

    private static readonly string[] OpenAIErrorKeys = ["message", "type", "param", "code"];

    /// <summary>An inline create (Shepherd's door) with every optional field.</summary>
    public const string InlineCreate = """
        {"model":"gpt-4o-mini","endpoint":"/v1/chat/completions","priority":"low","completion_window":"24h","mode":"realtime","budget_usd":1.5,
         "metadata":{"k":"v"},
         "requests":[{"custom_id":"a","prompt":"hi"},{"custom_id":"b","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":5}}]}
        """;

    /// <summary>An Anthropic Message Batches create.</summary>
    public const string AnthropicCreate = """
        {"requests":[{"custom_id":"x1","params":{"model":"claude-haiku-4.5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}}]}
        """;

    /// <summary>A line of an OpenAI batch input file.</summary>
    public const string FileLine = """
        {"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":5}}
        """;

    /// <summary>An OpenAI create of a batch from the uploaded file <paramref name="fileId"/>, with every optional field.</summary>
    public static string FileCreate(string fileId) =>
        $$$"""{"input_file_id":"{{{fileId}}}","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"k":"v"}}""";

    /// <summary>Tokens that are JSON strings to a reader that does not check their text.</summary>
    public static IReadOnlyList<(string Name, byte[] Bytes)> Strings { get; } =
    [
        ("invalid UTF-8 (lone lead byte)", [(byte)'"', (byte)'a', 0xC3, (byte)'(', (byte)'"']),
        ("invalid UTF-8 (0xFF)", [(byte)'"', 0xFF, (byte)'"']),
        ("invalid UTF-8 (overlong)", [(byte)'"', 0xC0, 0x80, (byte)'"']),
        ("UTF-8 encoded surrogate", [(byte)'"', 0xED, 0xA0, 0x80, (byte)'"']),
        ("escaped lone high surrogate", Encoding.ASCII.GetBytes("\"\\ud800\"")),
        ("escaped lone low surrogate", Encoding.ASCII.GetBytes("\"x\\udc00y\"")),
        ("escaped high surrogate before a letter", Encoding.ASCII.GetBytes("\"\\ud800\\u0041\"")),
    ];

    /// <summary>Tokens for any value position: the strings, and numbers and nesting no reader should fault on.</summary>
    public static IReadOnlyList<(string Name, byte[] Bytes)> Values { get; } =
    [
        .. Strings,
        ("1e400", "1e400"u8.ToArray()),
        ("-1e400", "-1e400"u8.ToArray()),
        ("99999999999999999999999", "99999999999999999999999"u8.ToArray()),
        ("1e-400", "1e-400"u8.ToArray()),
        ("array nested 200 deep", Encoding.ASCII.GetBytes(new string('[', 200) + new string(']', 200))),
        ("object nested 200 deep", Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("{\"a\":", 200)) + "1" + new string('}', 200))),
        ("array nested 60 deep", Encoding.ASCII.GetBytes(new string('[', 60) + new string(']', 60))),
    ];

    /// <summary>
    /// Every body made from <paramref name="json"/> by putting each token into each value position
    /// (strings into property names too).
    /// </summary>
    public static IEnumerable<HostileBody> Of(string json)
    {
        var root = JsonNode.Parse(json) ?? throw new ArgumentException("The body is null.", nameof(json));
        foreach (var (position, marked, isName) in Positions(root, "$"))
        {
            var text = Encoding.UTF8.GetBytes(marked.ToJsonString());
            foreach (var (name, token) in isName ? Strings : Values)
            {
                yield return new HostileBody(position, name, Replace(text, token));
            }
        }
    }

    /// <summary>Each position of <paramref name="node"/>: a copy of the whole document with the marker there.</summary>
    private static IEnumerable<(string Position, JsonNode Marked, bool IsName)> Positions(JsonNode node, string path)
    {
        var root = node.Root;
        switch (node)
        {
            case JsonObject obj:
                foreach (var name in obj.Select(p => p.Key).ToList())
                {
                    var child = $"{path}.{name}";
                    yield return (child + " (name)", Mark(root, copy => Rename((JsonObject)Find(copy, obj), name)), true);
                    foreach (var inner in obj[name] is { } value ? Positions(value, child) : [])
                    {
                        yield return inner;
                    }
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    foreach (var inner in array[i] is { } value ? Positions(value, $"{path}[{i}]") : [])
                    {
                        yield return inner;
                    }
                }

                break;
        }

        if (node.Parent is not null)
        {
            yield return (path, Mark(root, copy => Find(copy, node).ReplaceWith(Marker)), false);
        }
    }

    private static JsonNode Mark(JsonNode root, Action<JsonNode> change)
    {
        var copy = root.DeepClone();
        change(copy);
        return copy;
    }

    private static void Rename(JsonObject obj, string name)
    {
        var pairs = obj.Select(p => (p.Key == name ? Marker : p.Key, p.Value?.DeepClone())).ToList();
        obj.Clear();
        foreach (var (key, value) in pairs)
        {
            obj[key] = value;
        }
    }

    /// <summary>The node of <paramref name="copy"/> at the place <paramref name="original"/> has in its document.</summary>
    private static JsonNode Find(JsonNode copy, JsonNode original)
    {
        var steps = new Stack<JsonNode>();
        for (var at = original; at.Parent is not null; at = at.Parent)
        {
            steps.Push(at);
        }

        var node = copy;
        foreach (var step in steps)
        {
            node = step.Parent is JsonObject ? node[step.GetPropertyName()]! : node[step.GetElementIndex()]!;
        }

        return node;
    }

    private static byte[] Replace(byte[] text, byte[] token)
    {
        var marker = Encoding.UTF8.GetBytes($"\"{Marker}\"");
        var at = text.AsSpan().IndexOf(marker);
        return [.. text.AsSpan(0, at), .. token, .. text.AsSpan(at + marker.Length)];
    }

    /// <summary>A multipart upload written byte by byte, so its headers may hold any bytes.</summary>
    public static ByteArrayContent Multipart(byte[] filename, byte[] purpose, byte[] file)
    {
        ArgumentNullException.ThrowIfNull(filename);
        ArgumentNullException.ThrowIfNull(purpose);
        ArgumentNullException.ThrowIfNull(file);
        byte[] body =
        [
            .. "--b0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"u8, .. purpose,
            .. "\r\n--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\""u8, .. filename,
            .. "\"\r\nContent-Type: application/octet-stream\r\n\r\n"u8, .. file,
            .. "\n\r\n--b0undary--\r\n"u8,
        ];
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=b0undary");
        return content;
    }

    /// <summary>
    /// What is wrong with an answer of <paramref name="path"/> to a hostile body, or null: a 5xx,
    /// or a refusal outside the envelope of the path's door.
    /// </summary>
    public static string? Fault(string path, int status, string text)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (status >= 500)
        {
            return $"{status} {text}";
        }

        if (status == 200)
        {
            return null;
        }

        JsonElement answer;
        try
        {
            answer = JsonDocument.Parse(text).RootElement;
        }
        catch (JsonException)
        {
            return $"{status} with a body that is not JSON: {text}";
        }

        var anthropic = path.StartsWith("/v1/messages", StringComparison.Ordinal);
        var envelope = anthropic
            ? answer.ValueKind == JsonValueKind.Object && answer.TryGetProperty("type", out var type) && type.ValueEquals("error")
                && answer.TryGetProperty("error", out var inner) && inner.ValueKind == JsonValueKind.Object && inner.TryGetProperty("message", out _)
            : answer.ValueKind == JsonValueKind.Object && answer.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object
                && OpenAIErrorKeys.All(k => error.TryGetProperty(k, out _));
        return envelope ? null : $"{status} outside the {(anthropic ? "Anthropic" : "OpenAI")} envelope: {text}";
    }
}
