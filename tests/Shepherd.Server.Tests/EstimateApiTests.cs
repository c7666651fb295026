using System.Text;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Server.Tests;

public sealed class EstimateApiTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TokenEstimator Tokens = new();

    private static async Task<string> UploadAsync(HttpClient http, string content)
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(content)), "file", "input.jsonl" },
        };
        using var response = await http.PostAsync("/v1/files", form, Ct);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(Ct));
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString()!;
    }

    private static string ChatBody(string model, string prompt, int maxTokens) =>
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"{{prompt}}"}],"max_tokens":{{maxTokens}}}""";

    private static string ChatLine(string id, string model, string prompt, int maxTokens) =>
        $$"""{"custom_id":"{{id}}","method":"POST","url":"/v1/chat/completions","body":{{ChatBody(model, prompt, maxTokens)}}}""";

    private static int PromptTokens(string model, string body) => Tokens.Estimate(model, Encoding.UTF8.GetBytes(body)).PromptTokens;

    private static JsonElement Model(JsonElement estimate, string name) =>
        estimate.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("model").GetString() == name);

    [Fact]
    public async Task AnInlineBody_IsPricedPerModel_WithoutCreatingABatch()
    {
        await using var server = await RunningServer.StartAsync(upstream: u => u.Limits = new LaneLimits { RequestsPerMinute = 2 });
        const string body = """
            {"model":"gpt-4o-mini","priority":"high","metadata":{"job":"reviews"},
             "requests":[{"custom_id":"r1","prompt":"Is this review positive?"},
                         {"custom_id":"r2","body":{"messages":[{"role":"user","content":"Summarise it"}],"max_tokens":5}},
                         {"custom_id":"r3","body":{"model":"gpt-4.1","messages":[{"role":"user","content":"Translate it"}],"max_tokens":40}}]}
            """;

        var (status, estimate) = await server.PostAsync("/v1/batches/estimate", body);

        Assert.True(status == 200, estimate.ToString());
        Assert.Equal("batch.estimate", estimate.GetProperty("object").GetString());
        Assert.Equal(3, estimate.GetProperty("requests").GetInt64());
        var mini = Model(estimate, "gpt-4o-mini");
        var promptOnly = PromptTokens("gpt-4o-mini", """{"messages":[{"role":"user","content":"Is this review positive?"}]}""");
        var withBody = PromptTokens("gpt-4o-mini", """{"messages":[{"role":"user","content":"Summarise it"}]}""");
        Assert.Equal(promptOnly + withBody, mini.GetProperty("prompt_tokens").GetInt64());
        Assert.Equal(5 + (long)Math.Ceiling(promptOnly * 0.5), mini.GetProperty("output_tokens").GetInt64());
        Assert.Equal(1, mini.GetProperty("requests_with_assumed_output").GetInt64());
        Assert.Equal(
            PriceTable.BuiltIn.Price("gpt-4o-mini", mini.GetProperty("prompt_tokens").GetInt64(), mini.GetProperty("output_tokens").GetInt64()).Usd,
            mini.GetProperty("realtime_usd").GetDecimal());
        Assert.Equal(40, Model(estimate, "gpt-4.1").GetProperty("output_tokens").GetInt64());
        Assert.Equal(1.0, mini.GetProperty("minutes").GetDouble());
        Assert.Equal(2, mini.GetProperty("requests_per_minute").GetInt64());
        Assert.Equal(0, (await server.GetAsync("/v1/batches")).Body.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task AnUploadedFile_IsPriced_AndAModelOverridePricesEveryLineAsIt()
    {
        await using var server = await RunningServer.StartAsync();
        var lines = new[]
        {
            ChatLine("a", "gpt-4.1-mini", "Label: great value.", 20),
            ChatLine("b", "unknown-model", "Label: broke at once.", 20),
        };
        var fileId = await UploadAsync(server.Http, string.Join("\n", lines) + "\n");

        var (status, estimate) = await server.PostAsync("/v1/batches/estimate", $$"""{"input_file_id":"{{fileId}}"}""");
        var (overrideStatus, asHaiku) = await server.PostAsync("/v1/batches/estimate", $$"""{"input_file_id":"{{fileId}}","model":"claude-haiku-4.5","endpoint":"/v1/chat/completions"}""");

        Assert.True(status == 200, estimate.ToString());
        Assert.Equal(2, estimate.GetProperty("models").GetArrayLength());
        Assert.False(estimate.GetProperty("priced").GetBoolean());
        Assert.Equal(["unknown-model"], estimate.GetProperty("unpriced_models").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(0m, Model(estimate, "unknown-model").GetProperty("realtime_usd").GetDecimal());
        Assert.Equal(JsonValueKind.Null, estimate.GetProperty("minutes").ValueKind);

        Assert.True(overrideStatus == 200, asHaiku.ToString());
        var haiku = Assert.Single(asHaiku.GetProperty("models").EnumerateArray());
        Assert.Equal("claude-haiku-4.5", haiku.GetProperty("model").GetString());
        Assert.Equal(2, haiku.GetProperty("requests").GetInt64());
        Assert.True(asHaiku.GetProperty("priced").GetBoolean());
        Assert.Equal(
            PriceTable.BuiltIn.Price("claude-haiku-4.5", haiku.GetProperty("prompt_tokens").GetInt64(), 40).Usd,
            haiku.GetProperty("realtime_usd").GetDecimal());
    }

    [Fact]
    public async Task ADeadline_PricesEachTierAndThePlan_ForTheServersUpstreams()
    {
        await using var server = await RunningServer.StartAsync(upstream: u =>
        {
            u.BatchApi = true;
            u.Limits = new LaneLimits { RequestsPerMinute = 60 };
        });
        const string requests = """
            "requests":[{"custom_id":"r1","prompt":"Is this review positive?"},{"custom_id":"r2","prompt":"Is this one?"}]
            """;

        var (status, planned) = await server.PostAsync("/v1/batches/estimate", $$"""{"model":"gpt-4o-mini","deadline":"6h",{{requests}}}""");
        var (_, tight) = await server.PostAsync("/v1/batches/estimate", $$"""{"model":"gpt-4o-mini","deadline":60,{{requests}}}""");
        var (_, none) = await server.PostAsync("/v1/batches/estimate", $$"""{"model":"gpt-4o-mini",{{requests}}}""");
        var (bad, refused) = await server.PostAsync("/v1/batches/estimate", $$"""{"model":"gpt-4o-mini","deadline":"soon",{{requests}}}""");

        Assert.True(status == 200, planned.ToString());
        var plan = planned.GetProperty("plan");
        Assert.Equal(360, plan.GetProperty("deadline_minutes").GetDouble());
        Assert.Equal("native", plan.GetProperty("models")[0].GetProperty("tier").GetString());
        Assert.Equal(planned.GetProperty("batch_usd").GetDecimal(), plan.GetProperty("cost_usd").GetDecimal());
        Assert.Equal(planned.GetProperty("realtime_usd").GetDecimal(), plan.GetProperty("most_usd").GetDecimal());
        Assert.True(plan.GetProperty("on_time").GetBoolean());
        Assert.Equal(
            [("realtime", true), ("native", true), ("flex", false)],
            plan.GetProperty("tiers").EnumerateArray().Select(t => (t.GetProperty("tier").GetString(), t.GetProperty("available").GetBoolean())));
        // A minute leaves no room for a job before the cut-over: the plan is realtime.
        Assert.Equal("realtime", tight.GetProperty("plan").GetProperty("models")[0].GetProperty("tier").GetString());
        Assert.False(none.TryGetProperty("plan", out _));
        Assert.Equal(400, bad);
        Assert.Equal("deadline", refused.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task AnotherTenantsFile_IsNotFound()
    {
        await using var server = await RunningServer.StartAsync();
        var fileId = await UploadAsync(server.Http, ChatLine("a", "gpt-4o-mini", "hi", 5) + "\n");
        using var other = server.Client(RunningServer.OtherKey);

        var (status, error) = await RunningServer.SendAsync(other, HttpMethod.Post, "/v1/batches/estimate", $$"""{"input_file_id":"{{fileId}}"}""");

        Assert.Equal(404, status);
        Assert.Equal("invalid_request_error", error.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains(fileId, error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidInput_IsRefusedInTheDoorsEnvelope_NamingTheRequestOrLine()
    {
        await using var server = await RunningServer.StartAsync();
        var fileId = await UploadAsync(server.Http, ChatLine("a", "gpt-4o-mini", "hi", 5) + "\nnot json\n");

        var (fileStatus, fileError) = await server.PostAsync("/v1/batches/estimate", $$"""{"input_file_id":"{{fileId}}"}""");
        var (inlineStatus, inlineError) = await server.PostAsync("/v1/batches/estimate",
            """{"requests":[{"custom_id":"a","body":{"model":"gpt-4o-mini","messages":[]}},{"custom_id":"b","body":{"messages":[]}}]}""");
        var (shapeStatus, shapeError) = await server.PostAsync("/v1/batches/estimate", """{"model":"m","requests":[{"custom_id":"a"}]}""");
        var (emptyStatus, _) = await server.PostAsync("/v1/batches/estimate", """{"model":"m","requests":[]}""");
        var (unknownStatus, unknownError) = await server.PostAsync("/v1/batches/estimate", """{"input_file_id":"file-x","colour":"red"}""");
        var (endpointStatus, endpointError) = await server.PostAsync("/v1/batches/estimate", """{"endpoint":"/v1/nope","requests":[{"custom_id":"a","prompt":"p"}]}""");

        Assert.Equal(400, fileStatus);
        var file = fileError.GetProperty("error");
        Assert.Equal(("input_file_id", "invalid_json_line"), (file.GetProperty("param").GetString(), file.GetProperty("code").GetString()));
        Assert.Contains("line 2", file.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.StartsWith($"File '{fileId}' was not priced", file.GetProperty("message").GetString(), StringComparison.Ordinal);

        Assert.Equal(400, inlineStatus);
        var inline = inlineError.GetProperty("error");
        Assert.Equal(("requests[1]", "missing_model"), (inline.GetProperty("param").GetString(), inline.GetProperty("code").GetString()));
        Assert.StartsWith("The batch was not priced", inline.GetProperty("message").GetString(), StringComparison.Ordinal);

        Assert.Equal((400, "requests[0]"), (shapeStatus, shapeError.GetProperty("error").GetProperty("param").GetString()));
        Assert.Equal(400, emptyStatus);
        Assert.Equal((400, "colour"), (unknownStatus, unknownError.GetProperty("error").GetProperty("param").GetString()));
        Assert.Equal((400, "endpoint"), (endpointStatus, endpointError.GetProperty("error").GetProperty("param").GetString()));
    }
}
