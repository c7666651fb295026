using System.Text;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Pricing;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

public sealed class EstimateCommandTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private static int PromptTokens(TestRequest request, string? model = null)
    {
        var body = JsonDocument.Parse(request.Body).RootElement;
        return new TokenEstimator().Estimate(model ?? body.GetProperty("model").GetString()!, Encoding.UTF8.GetBytes(request.Body)).PromptTokens;
    }

    private static JsonElement Json(ProcessResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        return JsonDocument.Parse(result.Stdout).RootElement;
    }

    private static JsonElement Model(JsonElement estimate, string name) =>
        estimate.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("model").GetString() == name);

    [Fact]
    public async Task Json_GivesTheTokensCostsAndTime_OfEachModel()
    {
        var mini = BatchFiles.OpenAIChat(40, model: "gpt-4.1-mini", maxTokens: 50);
        var deepseek = BatchFiles.OpenAIChat(20, model: "deepseek-v3.2", maxTokens: 100, idPrefix: "ds-");
        var input = BatchFiles.Write(_folder.File("reviews.jsonl"), [.. mini, .. deepseek]);

        var estimate = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--json", "--rpm", "20", "--tpm", "100000"));

        Assert.Equal("batch.estimate", estimate.GetProperty("object").GetString());
        Assert.Equal(60, estimate.GetProperty("requests").GetInt64());
        var miniPrompt = mini.Sum(r => PromptTokens(r));
        var row = Model(estimate, "gpt-4.1-mini");
        Assert.Equal(40, row.GetProperty("requests").GetInt64());
        Assert.Equal(miniPrompt, row.GetProperty("prompt_tokens").GetInt64());
        Assert.Equal(40 * 50, row.GetProperty("output_tokens").GetInt64());
        Assert.Equal(0, row.GetProperty("assumed_output_tokens").GetInt64());
        Assert.Equal(PriceTable.BuiltIn.Price("gpt-4.1-mini", miniPrompt, 2000).Usd, row.GetProperty("realtime_usd").GetDecimal());
        Assert.Equal(PriceTable.BuiltIn.Price("gpt-4.1-mini", miniPrompt, 2000, batch: true).Usd, row.GetProperty("batch_usd").GetDecimal());
        Assert.Equal(row.GetProperty("realtime_usd").GetDecimal() / 2, row.GetProperty("batch_usd").GetDecimal());
        Assert.Equal(2.0, row.GetProperty("minutes").GetDouble());

        var ds = Model(estimate, "deepseek-v3.2");
        Assert.Equal(ds.GetProperty("realtime_usd").GetDecimal(), ds.GetProperty("batch_usd").GetDecimal());
        Assert.Equal(0m, ds.GetProperty("saving_usd").GetDecimal());
        Assert.Equal(1.0, ds.GetProperty("minutes").GetDouble());

        Assert.Equal(2.0, estimate.GetProperty("minutes").GetDouble());
        Assert.Equal(
            row.GetProperty("realtime_usd").GetDecimal() + ds.GetProperty("realtime_usd").GetDecimal(),
            estimate.GetProperty("realtime_usd").GetDecimal());
        Assert.True(estimate.GetProperty("priced").GetBoolean());
        Assert.Equal(0, estimate.GetProperty("errors").GetArrayLength());
    }

    [Fact]
    public async Task AfterARun_WhatTheAnswerCacheHolds_IsLeftOut_UnlessNoCacheIsGiven()
    {
        var requests = BatchFiles.OpenAIChat(6);
        var input = BatchFiles.Write(_folder.File("reviews.jsonl"), requests);
        var before = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--json"));
        await using (var server = await Simulators.StartHttpAsync())
        {
            Assert.Equal(0, (await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "k")).ExitCode);
        }

        BatchFiles.Write(input, [.. requests.Take(4), .. BatchFiles.OpenAIChat(2, idPrefix: "new-", model: "gpt-4.1-mini").Select(r => r with { Body = r.Body.Replace("Classify", "Rate", StringComparison.Ordinal), Line = r.Line.Replace("Classify", "Rate", StringComparison.Ordinal) })]);
        var after = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--json"));
        var everything = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--json", "--no-cache"));
        var person = await ShepherdProcess.RunAsync(_folder.Path, "estimate", input);
        var missing = await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--cache", _folder.File("missing.db"));

        Assert.Equal((6L, 0L), (before.GetProperty("requests").GetInt64(), before.GetProperty("cached").GetInt64()));
        Assert.Equal((2L, 4L), (after.GetProperty("requests").GetInt64(), after.GetProperty("cached").GetInt64()));
        Assert.True(after.GetProperty("cached_usd").GetDecimal() > 0);
        Assert.Equal((6L, 0L), (everything.GetProperty("requests").GetInt64(), everything.GetProperty("cached").GetInt64()));
        Assert.Contains("2 requests to send; 4 more the answer cache answers", person.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, missing.ExitCode);
        Assert.Contains($"warning: there is no answer cache at {_folder.File("missing.db")}; every request is priced.", missing.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(_folder.File("missing.db")));
    }

    [Fact]
    public async Task AModelOverride_PricesEveryRequestAsIt()
    {
        var requests = BatchFiles.Anthropic(10, model: "claude-haiku-4.5", maxTokens: 200);
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), requests);

        var estimate = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--model", "claude-sonnet-4.5", "--json"));

        var row = Assert.Single(estimate.GetProperty("models").EnumerateArray());
        Assert.Equal("claude-sonnet-4.5", row.GetProperty("model").GetString());
        var prompt = requests.Sum(r => PromptTokens(r, "claude-sonnet-4.5"));
        Assert.Equal(PriceTable.BuiltIn.Price("claude-sonnet-4.5", prompt, 2000).Usd, row.GetProperty("realtime_usd").GetDecimal());
        Assert.Equal(3.00m, row.GetProperty("price").GetProperty("input").GetDecimal());
    }

    [Fact]
    public async Task ADeadline_PricesEachTier_AndThePlanOfTheConfiguredUpstreams()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(600, model: "gpt-4o-mini", maxTokens: 20));
        var config = _folder.File("shepherd.json");
        File.WriteAllText(config, """
            {
              "upstreams": [ { "name": "openai", "baseUrl": "http://127.0.0.1:1/v1", "rpm": 600, "batchApi": true, "flex": true } ],
              "native": { "pollSeconds": 30, "cancelGraceSeconds": 60 }
            }
            """);

        var estimate = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--config", config, "--deadline", "2h", "--json"));
        var text = await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--config", config, "--deadline", "2h");

        var plan = estimate.GetProperty("plan");
        var model = plan.GetProperty("models")[0];
        Assert.Equal("native", model.GetProperty("tier").GetString());
        // 600 requests at 600 rpm: a minute of realtime; the margin a quarter of it, two looks of 30 s and the 60 s grace.
        Assert.Equal(120 - 1 - 0.25 - 1 - 1, model.GetProperty("cut_over_after_minutes").GetDouble(), 1);
        Assert.Equal(estimate.GetProperty("batch_usd").GetDecimal(), plan.GetProperty("cost_usd").GetDecimal());
        Assert.All(plan.GetProperty("tiers").EnumerateArray(), tier => Assert.True(tier.GetProperty("available").GetBoolean()));
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("For a deadline of 2 h 0 min:", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("gpt-4o-mini: native; what is not answered after 116.8 min goes in realtime", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheConfiguration_PricesUnlistedModels_AndItsLimitsGiveTheTime()
    {
        var requests = BatchFiles.OpenAIChat(30, model: "my-finetune", maxTokens: 10);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        var config = _folder.File("shepherd.json");
        File.WriteAllText(config, """
            {
              "upstreams": [
                { "name": "one", "baseUrl": "http://127.0.0.1:1/v1", "rpm": 10, "lanes": { "my-finetune": { "rpm": 5 } } },
                { "name": "two", "baseUrl": "http://127.0.0.1:2/v1", "rpm": 10 }
              ],
              "prices": { "my-finetune": { "input": 1.0, "output": 2.0, "cachedInput": 0.5, "batchDiscount": 0.5 } }
            }
            """);

        var estimate = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--config", config, "--json"));
        var given = Json(await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--config", config, "--rpm", "60", "--json"));

        var row = Assert.Single(estimate.GetProperty("models").EnumerateArray());
        Assert.True(row.GetProperty("priced").GetBoolean());
        var prompt = requests.Sum(r => PromptTokens(r));
        Assert.Equal(((prompt * 1.0m) + (300 * 2.0m)) / 1_000_000m, row.GetProperty("realtime_usd").GetDecimal());
        Assert.Equal(15, row.GetProperty("requests_per_minute").GetInt64());
        Assert.Equal(2.0, row.GetProperty("minutes").GetDouble());
        Assert.Equal(0.5, given.GetProperty("minutes").GetDouble());
    }

    [Fact]
    public async Task TheTable_ShowsEachModel_AndSaysWhatIsAssumedAndUnpriced()
    {
        var input = BatchFiles.WriteLines(_folder.File("mixed.jsonl"),
        [
            .. BatchFiles.OpenAIChat(3, model: "gpt-4o-mini").Select(r => r.Line),
            """{"custom_id":"x1","method":"POST","url":"/v1/chat/completions","body":{"model":"mystery-model","messages":[{"role":"user","content":"Tell me a long story about lanes."}]}}""",
        ]);

        var result = await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--rpm", "60");

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var expected in new[] { "prompt tokens", "output tokens", "realtime $", "batch $", "saving", "gpt-4o-mini", "mystery-model", "total", "unpriced", "No price for mystery-model", "assumed", "0.5 × its prompt tokens", "Time at the rate limits" })
        {
            Assert.Contains(expected, result.Stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AnInvalidLine_Exits2_NamingItsLine()
    {
        var good = BatchFiles.OpenAIChat(3);
        var input = BatchFiles.WriteLines(_folder.File("bad.jsonl"), [good[0].Line, good[1].Line, "{\"custom_id\":\"c\",\"method\":\"POST\"", good[2].Line]);

        var result = await ShepherdProcess.RunAsync(_folder.Path, "estimate", input, "--json");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("bad.jsonl:line 3:", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("invalid_json_line", result.Stderr, StringComparison.Ordinal);
        // With --json, a script reads the same refusal as one document on stdout.
        var problem = System.Text.Json.JsonDocument.Parse(result.Stdout).RootElement.GetProperty("problems").EnumerateArray().Single();
        Assert.Equal((3, "invalid_json_line"), (problem.GetProperty("line").GetInt32(), problem.GetProperty("code").GetString()));
    }

    [Fact]
    public async Task AMissingFileOrABadLimit_Exits2()
    {
        var missing = await ShepherdProcess.RunAsync(_folder.Path, "estimate", _folder.File("nope.jsonl"));
        var zero = await ShepherdProcess.RunAsync(_folder.Path, "estimate", BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(1)), "--rpm", "0");

        Assert.Equal(2, missing.ExitCode);
        Assert.Equal(2, zero.ExitCode);
        Assert.Contains("--rpm must be a whole number of at least 1", zero.Stderr, StringComparison.Ordinal);
    }
}
