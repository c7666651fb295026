using System.Text.Json.Nodes;
using Parquet;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary><c>run --format csv|parquet</c>: a row per request in input order, with a column per field of the schema its requests ask for.</summary>
public sealed class RunTableTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Schema = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"score":{"type":"integer"},"features":{"type":"array","items":{"type":"string"}}},"required":["sentiment","score","features"],"additionalProperties":false}""";

    /// <summary>Structured chat requests asking for <see cref="Schema"/>.</summary>
    private string Input(int count)
    {
        var path = _folder.File("reviews.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, count).Select(i => new JsonObject
        {
            ["custom_id"] = $"r{i}",
            ["method"] = "POST",
            ["url"] = "/v1/chat/completions",
            ["body"] = new JsonObject
            {
                ["model"] = "gpt-4o-mini",
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Review {i}: good, but heavy." }),
                ["response_format"] = new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "review", ["strict"] = true, ["schema"] = JsonNode.Parse(Schema) } },
            },
        }.ToJsonString()));
        return path;
    }

    private static string[] Run(string input, SimulatorServer server, params string[] more) =>
        ["run", input, "--provider", "openai", "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "test-key", "--progress", "none", "--no-cache", .. more];

    [Fact]
    public async Task Csv_HasEveryRequest_InInputOrder_WithTheSchemasFieldsAsColumns()
    {
        var input = Input(40);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Error500Rate = 0.2 }, seed: 3);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--format", "csv", "--max-attempts", "1"));

        var lines = File.ReadAllLines(_folder.File("reviews.out.csv"));
        Assert.Equal("custom_id,status,sentiment,score,features,status_code,text,input_tokens,output_tokens,cost_usd,cached,error_code,error_message", lines[0]);
        Assert.Equal(Enumerable.Range(0, 40).Select(i => $"r{i}"), lines.Skip(1).Select(l => l.Split(',')[0]));
        var failed = lines.Skip(1).Where(l => l.Split(',')[1] == "failed").ToList();
        Assert.NotEmpty(failed);
        Assert.All(lines.Skip(1).Where(l => l.Split(',')[1] == "succeeded"), l => Assert.Matches("^r\\d+,succeeded,(positive|neutral|negative),\\d+,", l));
        Assert.Equal(failed.Count, File.ReadAllLines(_folder.File("reviews.errors.jsonl")).Length);
        Assert.Contains("results: reviews.out.csv (40 rows)", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Parquet_IsReadableAsATable_WithTypedFieldColumns()
    {
        var input = Input(30);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions());

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--format", "parquet", "-o", _folder.File("table.parquet")));

        Assert.True(result.ExitCode == 0, result.ToString());
        await using var file = File.OpenRead(_folder.File("table.parquet"));
        await using var reader = await ParquetReader.CreateAsync(file, cancellationToken: Ct);
        var fields = reader.Schema.GetDataFields();
        using var group = reader.OpenRowGroupReader(0);
        var ids = new string?[group.RowCount];
        var scores = new long?[group.RowCount];
        await group.ReadAsync(fields.Single(f => f.Name == "custom_id"), ids.AsMemory(), cancellationToken: Ct);
        await group.ReadAsync<long>(fields.Single(f => f.Name == "score"), scores.AsMemory(), cancellationToken: Ct);

        Assert.Equal(30, group.RowCount);
        Assert.Equal(Enumerable.Range(0, 30).Select(i => $"r{i}"), ids);
        Assert.All(scores, s => Assert.NotNull(s));
        Assert.Contains("sentiment", fields.Select(f => f.Name));
    }

    [Fact]
    public async Task BrokenAnswers_AreAskedAgain_TheSummarySaysHowTheChecksCameOut_AndTheTableKeepsTheLastAnswer()
    {
        var input = Input(40);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { BrokenJsonRate = 0.3, SchemaBreakRate = 0.3 }, seed: 5);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--format", "csv", "--max-invalid-attempts", "1", "--json"));

        using var summary = System.Text.Json.JsonDocument.Parse(result.Stdout);
        var checks = summary.RootElement.GetProperty("output_checks");
        var (first, again, invalid) = (checks.GetProperty("valid_first").GetInt64(), checks.GetProperty("valid_reasked").GetInt64(), checks.GetProperty("invalid").GetInt64());
        Assert.Equal(40, first + again + invalid);
        Assert.True(again > 0 && invalid > 0, result.ToString());
        Assert.Equal(again + invalid, checks.GetProperty("reasked").GetInt64());
        Assert.Equal(invalid, summary.RootElement.GetProperty("failed").GetInt64());
        // Each request was sent once, and once more if its first answer did not fit.
        Assert.Equal(40 + again + invalid, server.Provider.ExecutedCounts().Values.Sum());
        // A row per request: those that failed say why (the last answer's text, quoted, may run over lines).
        var table = File.ReadAllText(_folder.File("reviews.out.csv"));
        Assert.Equal(invalid, System.Text.RegularExpressions.Regex.Count(table, ",failed,,,,200,"));
        Assert.Equal(invalid, System.Text.RegularExpressions.Regex.Count(table, ",invalid_output,"));
        var errors = File.ReadAllLines(_folder.File("reviews.errors.jsonl"));
        Assert.All(errors, line => Assert.Contains("\"code\":\"invalid_output\"", line, StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheHumanSummary_SaysHowTheChecksCameOut()
    {
        var input = Input(20);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { SchemaBreakRate = 0.5 }, seed: 2);

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, server, "--max-invalid-attempts", "0"));

        Assert.Matches(@"output:  20 checked: \d+\.\d% valid at the first try, \d+\.\d% after asking again \(0 asked again, \$0(\.0+)?\); \d+ invalid_output", result.Stdout);
    }

    [Theory]
    [InlineData("missing.json", null, "--output-schema missing.json cannot be read: it does not exist.")]
    [InlineData("schema.json", "{\"type\":", "--output-schema schema.json is not a schema the answers can be checked against: it is not JSON")]
    [InlineData("schema.json", "{\"type\":\"no-such-type\"}", "--output-schema schema.json is not a schema the answers can be checked against: 'no-such-type' is not a valid JSON Schema value type")]
    [InlineData("schema.json", "{\"properties\":{\"a\":{\"$ref\":\"#/$defs/gone\"}}}", "--output-schema schema.json is not a schema the answers can be checked against: its \"$ref\": \"#/$defs/gone\" leads nowhere in it")]
    [InlineData("schema.json", "[1]", "--output-schema schema.json is not a schema the answers can be checked against: a JSON Schema is an object")]
    public async Task ABadSchemaFile_IsRefusedNamingTheFlagAndTheFile_BeforeAnythingIsSent(string name, string? text, string said)
    {
        var input = Input(2);
        if (text is not null)
        {
            File.WriteAllText(_folder.File(name), text);
        }

        var result = await ShepherdProcess.RunAsync(_folder.Path, ["run", input, "--provider", "sim", "--output-schema", name, "--progress", "none"]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(said, result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(_folder.File("reviews.jsonl.shepherd.db")));
    }
}
