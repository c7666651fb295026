using System.Text;
using System.Text.Json;

namespace Shepherd.Testing;

/// <summary>One request of a test batch: its id, the exact body bytes and the whole input line.</summary>
public sealed record TestRequest(string CustomId, string Body, string Line)
{
    /// <summary>The body's key in the simulator's reception counts.</summary>
    public ulong Key => Simulator.SimulatedProvider.KeyOf(Encoding.UTF8.GetBytes(Body));
}

/// <summary>Builds batch input files whose every body is unique, so receptions can be traced to requests.</summary>
public static class BatchFiles
{
    public static IReadOnlyList<TestRequest> OpenAIChat(int count, string model = "gpt-4.1-mini", int maxTokens = 50, string idPrefix = "req-") =>
        OpenAIChat(count, i => $"Classify review #{i}: the product arrived on time and works.", model, maxTokens, idPrefix);

    /// <summary>Chat requests whose prompts are <paramref name="minWords"/> to <paramref name="maxWords"/> words long (a fixed seed).</summary>
    public static IReadOnlyList<TestRequest> OpenAIChatOfWords(int count, int minWords, int maxWords, int maxTokens, int seed = 1)
    {
        string[] words = ["battery", "price", "delivery", "quality", "screen", "sound", "comfort", "value", "setup", "works", "well", "poorly"];
        var random = new Random(seed);
        var prompts = Enumerable.Range(0, count + 1)
            .Select(_ => string.Join(' ', Enumerable.Range(0, random.Next(minWords, maxWords + 1)).Select(_ => words[random.Next(words.Length)])))
            .ToList();
        return OpenAIChat(count, i => prompts[i], "gpt-4.1-mini", maxTokens, "req-");
    }

    /// <summary>Chat requests whose prompts <paramref name="prompt"/> writes, numbered from 1.</summary>
    public static List<TestRequest> OpenAIChat(int count, Func<int, string> prompt, string model, int maxTokens, string idPrefix) =>
        [.. Enumerable.Range(1, count).Select(i =>
        {
            var body = JsonSerializer.Serialize(new
            {
                model,
                messages = new[] { new { role = "user", content = prompt(i) } },
                max_tokens = maxTokens,
            });
            var id = $"{idPrefix}{i:D5}";
            return new TestRequest(id, body, $"{{\"custom_id\":\"{id}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{body}}}");
        })];

    public static IReadOnlyList<TestRequest> Anthropic(int count, string model = "claude-haiku-4.5", int maxTokens = 50) =>
        [.. Enumerable.Range(1, count).Select(i =>
        {
            var body = JsonSerializer.Serialize(new
            {
                model,
                max_tokens = maxTokens,
                messages = new[] { new { role = "user", content = $"Summarise document {i} in one line." } },
            });
            var id = $"doc-{i:D5}";
            return new TestRequest(id, body, $"{{\"custom_id\":\"{id}\",\"params\":{body}}}");
        })];

    /// <summary>A review's sentiment and features, the seed's own example of structured output.</summary>
    public const string ReviewSchema = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"features":{"type":"array","items":{"type":"string"},"minItems":1},"score":{"type":"integer"}},"required":["sentiment","features","score"],"additionalProperties":false}""";

    /// <summary>
    /// Chat requests that ask for structured output: a <c>json_schema</c> response format of
    /// <paramref name="schema"/>, or <c>json_object</c> when it is null; with
    /// <paramref name="asked"/> false, plain chat requests (for a batch-level schema).
    /// </summary>
    public static List<TestRequest> OpenAIStructured(int count, string? schema = ReviewSchema, bool asked = true, string idPrefix = "rev-") =>
        [.. Enumerable.Range(1, count).Select(i =>
        {
            var body = new System.Text.Json.Nodes.JsonObject
            {
                ["model"] = "gpt-4.1-mini",
                ["messages"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["role"] = "user", ["content"] = $"Review #{i}: sentiment and key features as JSON." }),
                ["max_tokens"] = 80,
            };
            if (asked)
            {
                body["response_format"] = schema is null
                    ? new System.Text.Json.Nodes.JsonObject { ["type"] = "json_object" }
                    : new System.Text.Json.Nodes.JsonObject { ["type"] = "json_schema", ["json_schema"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "review", ["strict"] = true, ["schema"] = System.Text.Json.Nodes.JsonNode.Parse(schema) } };
            }

            var text = body.ToJsonString();
            var id = $"{idPrefix}{i:D5}";
            return new TestRequest(id, text, $"{{\"custom_id\":\"{id}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{text}}}");
        })];

    /// <summary>Anthropic requests that make the model call one tool whose input is <paramref name="schema"/>.</summary>
    public static List<TestRequest> AnthropicTool(int count, string schema = ReviewSchema, string idPrefix = "rev-") =>
        [.. Enumerable.Range(1, count).Select(i =>
        {
            var body = new System.Text.Json.Nodes.JsonObject
            {
                ["model"] = "claude-haiku-4.5",
                ["max_tokens"] = 80,
                ["messages"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["role"] = "user", ["content"] = $"Review #{i}: record it." }),
                ["tools"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["name"] = "record", ["input_schema"] = System.Text.Json.Nodes.JsonNode.Parse(schema) }),
                ["tool_choice"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "tool", ["name"] = "record" },
            }.ToJsonString();
            var id = $"{idPrefix}{i:D5}";
            return new TestRequest(id, body, $"{{\"custom_id\":\"{id}\",\"params\":{body}}}");
        })];

    public static string Write(string path, IEnumerable<TestRequest> requests) => WriteLines(path, requests.Select(r => r.Line));

    public static string WriteLines(string path, IEnumerable<string> lines)
    {
        System.IO.File.WriteAllText(path, string.Join('\n', lines) + "\n");
        return path;
    }

    public static MemoryStream Stream(params string[] lines) => new(Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n"));

    /// <summary>The JSON objects of a JSONL file, one per line; fails on a blank or broken line.</summary>
    public static List<JsonElement> ReadJsonl(string path) =>
        [.. System.IO.File.ReadAllLines(path).Select(line => JsonDocument.Parse(line).RootElement.Clone())];
}
