using System.Text;
using System.Text.Json.Nodes;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// What checking answers against their schema costs a run: <c>shepherd run</c> of <c>--requests</c>
/// review requests four times against a fast simulator in the same bench run. First as plain chat
/// (nothing checked), then as bodies of the same size that ask for free text (the schema carried
/// in <c>metadata</c>: the baseline, unchecked), then asking for a <c>json_schema</c> answer (each
/// checked, all fit), then with <c>--broken-percent</c> of the answers broken JSON and as many
/// breaking the schema (each asked again, up to the default re-asks). Each row says what the
/// provider received and what the run's own process spent in CPU.
/// </summary>
internal static class StructuredScenario
{
    private const string Schema = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"features":{"type":"array","items":{"type":"string"},"minItems":1},"score":{"type":"integer","minimum":1,"maximum":5}},"required":["sentiment","features","score"],"additionalProperties":false}""";

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 20_000);
        var broken = args.Int("broken-percent", 10);
        var concurrency = args.Int("concurrency", 64);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var folder = Directory.CreateTempSubdirectory("shepherd-bench-structured-").FullName;
        try
        {
            var plain = Write(Path.Combine(folder, "plain.jsonl"), count, Ask.Nothing);
            var carried = Write(Path.Combine(folder, "carried.jsonl"), count, Ask.FreeText);
            var structured = Write(Path.Combine(folder, "structured.jsonl"), count, Ask.Schema);
            var more = new[] { "--concurrency", ShepherdRun.Text(concurrency) };
            var rows = new List<StructuredRow>();
            foreach (var (name, input, share) in new[] { ("plain (unchecked)", plain, 0.0), ("schema in metadata, free text (unchecked)", carried, 0.0), ("json_schema, all fit", structured, 0.0), ($"json_schema, {broken}% broken JSON + {broken}% break the schema", structured, broken / 100.0) })
            {
                var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1), BrokenJsonRate = share, SchemaBreakRate = share };
                await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(3)), 0, CancellationToken.None);
                var run = await ShepherdRun.StartAsync(input, server.BaseUrl, more);
                var checks = run.Summary.GetProperty("output_checks");
                var row = new StructuredRow(
                    name,
                    server.Provider.Stats().Requests,
                    run.WallSeconds,
                    run.DispatchSeconds,
                    run.Seconds("cpu_seconds"),
                    Math.Round(run.Seconds("cpu_seconds") * 1e6 / count, 1),
                    run.Number("succeeded"),
                    run.Number("failed"),
                    checks.GetProperty("checked").GetInt64(),
                    checks.GetProperty("valid_first").GetInt64(),
                    checks.GetProperty("valid_reasked").GetInt64(),
                    checks.GetProperty("invalid").GetInt64(),
                    run.Summary.GetProperty("cost_usd").GetDecimal(),
                    checks.GetProperty("reask_cost_usd").GetDecimal());
                await Console.Error.WriteLineAsync($"{name}: received {row.Received}, {row.WallSeconds:0.00} s, cpu {row.CpuSeconds:0.00} s ({row.CpuMicrosecondsPerRequest} µs/request), checked {row.Checked}: {row.ValidFirst} first, {row.ValidReasked} re-asked, {row.Invalid} invalid");
                rows.Add(row);
            }

            return new
            {
                Scenario = "structured",
                Machine = Machine.Describe(),
                Requests = count,
                Concurrency = concurrency,
                BrokenPercent = broken,
                Rows = rows,
            };
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private enum Ask
    {
        Nothing,
        FreeText,
        Schema,
    }

    /// <summary>Review requests, each distinct: plain, or carrying <see cref="Schema"/> as metadata (free text asked), or asking for it.</summary>
    private static string Write(string path, int count, Ask ask)
    {
        using var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        for (var i = 0; i < count; i++)
        {
            var body = new JsonObject
            {
                ["model"] = "gpt-4o-mini",
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Review #{i}: arrived late, works well. Sentiment and key features?" }),
                ["max_tokens"] = 60,
            };
            switch (ask)
            {
                case Ask.FreeText:
                    body["response_format"] = new JsonObject { ["type"] = "text" };
                    body["metadata"] = new JsonObject { ["review"] = "review", ["schema"] = Schema };
                    break;
                case Ask.Schema:
                    body["response_format"] = new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "review", ["strict"] = true, ["schema"] = JsonNode.Parse(Schema) } };
                    break;
            }

            writer.Write(new JsonObject { ["custom_id"] = $"r{i}", ["method"] = "POST", ["url"] = "/v1/chat/completions", ["body"] = body }.ToJsonString());
            writer.Write('\n');
        }

        return path;
    }

    private sealed record StructuredRow(
        string Run, long Received, double WallSeconds, double DispatchSeconds, double CpuSeconds, double CpuMicrosecondsPerRequest,
        long Succeeded, long Failed, long Checked, long ValidFirst, long ValidReasked, long Invalid, decimal CostUsd, decimal ReaskCostUsd);
}
