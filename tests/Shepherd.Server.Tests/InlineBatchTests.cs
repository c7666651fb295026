using System.Text.Json;
using Shepherd.Simulator;

namespace Shepherd.Server.Tests;

public sealed class InlineBatchTests
{
    private const string TwoPrompts = """
        {"model":"gpt-4o-mini","priority":"high","metadata":{"job":"reviews"},
         "requests":[{"custom_id":"r1","prompt":"Is this review positive?"},
                     {"custom_id":"r2","body":{"messages":[{"role":"user","content":"Summarise it"}],"max_tokens":5}}]}
        """;

    [Fact]
    public async Task AnInlineBatch_RunsToCompletion_AndPagesItsResults()
    {
        await using var server = await RunningServer.StartAsync();

        var (status, created) = await server.PostAsync("/v1/batches", TwoPrompts);

        Assert.Equal(200, status);
        var id = created.GetProperty("id").GetString()!;
        Assert.Equal(id, created.GetProperty("batch_id").GetString());
        Assert.Equal(2, created.GetProperty("total_items").GetInt64());
        Assert.Equal("high", created.GetProperty("priority").GetString());
        Assert.Equal("reviews", created.GetProperty("metadata").GetProperty("job").GetString());
        var costWhenCreated = created.GetProperty("cost_usd").GetDouble();

        var ended = await server.WaitForEndAsync(id);
        // The dispatcher may answer a request before the create's answer is written: what it says is part of the end's cost.
        Assert.InRange(costWhenCreated, 0, ended.GetProperty("cost_usd").GetDouble());
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal(100, ended.GetProperty("progress").GetDouble());
        Assert.Equal(2, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.True(ended.GetProperty("usage").GetProperty("total_tokens").GetInt64() > 0);
        Assert.Equal(JsonValueKind.String, ended.GetProperty("output_file_id").ValueKind);

        var (_, first) = await server.GetAsync($"/v1/batches/{id}/results?limit=1");
        Assert.True(first.GetProperty("has_more").GetBoolean());
        Assert.Equal(1, first.GetProperty("next_offset").GetInt64());
        var line = Assert.Single(first.GetProperty("data").EnumerateArray());
        Assert.Equal(("r1", "succeeded", 200), (line.GetProperty("custom_id").GetString(), line.GetProperty("status").GetString(), line.GetProperty("response").GetProperty("status_code").GetInt32()));

        var (_, second) = await server.GetAsync($"/v1/batches/{id}/results?offset=1&limit=1");
        Assert.False(second.GetProperty("has_more").GetBoolean());
        Assert.Equal(JsonValueKind.Null, second.GetProperty("next_offset").ValueKind);
        Assert.Equal("r2", Assert.Single(second.GetProperty("data").EnumerateArray()).GetProperty("custom_id").GetString());

        var (oneStatus, one) = await server.GetAsync($"/v1/batches/{id}/results/r2");
        Assert.Equal(200, oneStatus);
        Assert.Equal("gpt-4o-mini", one.GetProperty("response").GetProperty("body").GetProperty("model").GetString());
        Assert.Equal(404, (await server.GetAsync($"/v1/batches/{id}/results/nope")).Status);
    }

    [Fact]
    public async Task PromptsBecomeTheEndpointsOwnBodies()
    {
        await using var server = await RunningServer.StartAsync();

        var (_, created) = await server.PostAsync("/v1/batches", """
            {"model":"text-embedding-3-small","endpoint":"/v1/embeddings","requests":[{"custom_id":"e","prompt":"a sentence"}]}
            """);
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        Assert.Equal("/v1/embeddings", ended.GetProperty("endpoint").GetString());
        var (_, result) = await server.GetAsync($"/v1/batches/{ended.GetProperty("id").GetString()}/results/e");
        Assert.Equal("list", result.GetProperty("response").GetProperty("body").GetProperty("object").GetString());
    }

    [Fact]
    public async Task AnIdempotencyKey_ReturnsTheFirstBatchOnARetry()
    {
        await using var server = await RunningServer.StartAsync();

        var (_, first) = await server.PostAsync("/v1/batches", TwoPrompts, idempotencyKey: "create-42");
        var (status, again) = await server.PostAsync("/v1/batches", TwoPrompts, idempotencyKey: "create-42");
        var (_, other) = await server.PostAsync("/v1/batches", TwoPrompts, idempotencyKey: "create-43");

        Assert.Equal(200, status);
        Assert.Equal(first.GetProperty("id").GetString(), again.GetProperty("id").GetString());
        Assert.NotEqual(first.GetProperty("id").GetString(), other.GetProperty("id").GetString());
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal(2, list.GetProperty("data").GetArrayLength());
    }

    [Theory]
    [InlineData("""{"model":"m","requests":[{"custom_id":"a"}]}""", "requests[0]", "either \"prompt\" or \"body\"")]
    [InlineData("""{"model":"m","requests":[{"custom_id":"a","prompt":"x"},{"custom_id":"a","prompt":"y"}]}""", "requests[1]", "already used on requests[0]")]
    [InlineData("""{"requests":[{"custom_id":"a","prompt":"x"}]}""", "requests[0]", "model")]
    [InlineData("""{"model":"m","requests":[]}""", "requests", "at least one request")]
    [InlineData("""{"model":"m","priority":"urgent","requests":[{"custom_id":"a","prompt":"x"}]}""", "priority", "\"urgent\"")]
    [InlineData("""{"model":"m","endpoint":"/v1/images","requests":[{"custom_id":"a","prompt":"x"}]}""", "endpoint", "/v1/images")]
    [InlineData("""{"model":"m","budget_usd":-5,"requests":[{"custom_id":"a","prompt":"x"}]}""", "budget_usd", "0 or more")]
    [InlineData("""{"model":"m","colour":"red","requests":[{"custom_id":"a","prompt":"x"}]}""", "colour", "Unknown field")]
    [InlineData("""{"model":"m","completion_window":"soon","requests":[{"custom_id":"a","prompt":"x"}]}""", "completion_window", "\"soon\"")]
    [InlineData("""{"model":"m","requests":[{"custom_id":"a","prompt":"x"}""", "requests[0]", "not valid JSON")]
    [InlineData("""[1,2]""", null, "must be a JSON object")]
    public async Task ABadInlineBatch_IsRefusedWithWhatAndWhere_AndLeavesNothing(string body, string? param, string message)
    {
        await using var server = await RunningServer.StartAsync();

        var (status, error) = await server.PostAsync("/v1/batches", body);

        Assert.Equal(400, status);
        var detail = error.GetProperty("error");
        Assert.Equal("invalid_request_error", detail.GetProperty("type").GetString());
        Assert.Equal(param, detail.GetProperty("param").GetString());
        Assert.Contains(message, detail.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.True(detail.TryGetProperty("code", out _));
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal(0, list.GetProperty("data").GetArrayLength());
    }

    [Theory]
    [InlineData("/v1/batches")]
    [InlineData("/v1/batches/estimate")]
    public async Task SeveralBadRequests_AreAllNamed_NotOnlyTheFirst(string path)
    {
        await using var server = await RunningServer.StartAsync();

        var (status, error) = await server.PostAsync(path, """
            {"model":"m","requests":[
              {"custom_id":"a","prompt":"x"},
              {"custom_id":"a","prompt":"y"},
              {"prompt":"z"},
              {"custom_id":"d","body":{"messages":[{"role":"user","content":"w"}],"stream":true}}]}
            """);

        Assert.Equal(400, status);
        var detail = error.GetProperty("error");
        var message = detail.GetProperty("message").GetString()!;
        // Pricing reads the ids against each other as a create does: both name the duplicate first.
        Assert.Equal("requests[1]", detail.GetProperty("param").GetString());
        Assert.Equal("duplicate_custom_id", detail.GetProperty("code").GetString());
        Assert.Contains("requests[1]: custom_id \"a\" is already used on requests[0]", message, StringComparison.Ordinal);

        Assert.Contains("requests[2]: \"custom_id\" is missing", message, StringComparison.Ordinal);
        Assert.Contains("requests[3]: \"body.stream\" is true", message, StringComparison.Ordinal);
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal(0, list.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task ManyBadRequests_NameTheFirstFive_AndCountTheRest()
    {
        await using var server = await RunningServer.StartAsync();
        var requests = string.Join(",", Enumerable.Range(0, 8).Select(i => i % 2 == 0 ? $$"""{"prompt":"p{{i}}"}""" : $$$"""{"custom_id":"r{{{i}}}","body":{"stream":true}}"""));

        var (status, error) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{requests}}]}""");

        Assert.Equal(400, status);
        var message = error.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Equal(["requests[0]", "requests[1]", "requests[2]", "requests[3]", "requests[4]"], System.Text.RegularExpressions.Regex.Matches(message, @"requests\[\d+\]").Select(m => m.Value));
        Assert.EndsWith("(and 3 more errors).", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MetadataLimits_AreChecked()
    {
        await using var server = await RunningServer.StartAsync();
        var tooMany = string.Join(",", Enumerable.Range(0, 17).Select(i => $"\"k{i}\":\"v\""));
        var longValue = new string('v', 513);

        var (manyStatus, many) = await server.PostAsync("/v1/batches", $$"""{"model":"m","metadata":{{{tooMany}}},"requests":[{"custom_id":"a","prompt":"x"}]}""");
        var (longStatus, _) = await server.PostAsync("/v1/batches", $$"""{"model":"m","metadata":{"k":"{{longValue}}"},"requests":[{"custom_id":"a","prompt":"x"}]}""");
        var (keyStatus, _) = await server.PostAsync("/v1/batches", $$"""{"model":"m","metadata":{"{{new string('k', 65)}}":"v"},"requests":[{"custom_id":"a","prompt":"x"}]}""");

        Assert.Equal((400, 400, 400), (manyStatus, longStatus, keyStatus));
        Assert.Equal("metadata", many.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task ABodyOverTheLimit_Gets413()
    {
        await using var server = await RunningServer.StartAsync(tune: options => options.MaxCreateBodyBytes = 4096);
        var requests = string.Join(",", Enumerable.Range(0, 200).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"a prompt of some length"}"""));

        var (status, error) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{requests}}]}""");

        Assert.Equal(413, status);
        Assert.Contains("4096", error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TooManyRequests_AreRefused()
    {
        await using var server = await RunningServer.StartAsync(tune: options => options.MaxCreateRequests = 3);
        var requests = string.Join(",", Enumerable.Range(0, 4).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"p"}"""));

        var (status, error) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{requests}}]}""");

        Assert.Equal(400, status);
        Assert.Contains("at most 3", error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CancellingARunningBatch_KeepsWhatFinished_AndEndsTheRestCancelled()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(5), RequestsPerMinute = 600 });
        var requests = string.Join(",", Enumerable.Range(0, 200).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"p"}"""));
        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{requests}}]}""");
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForAsync($"/v1/batches/{id}", b => b.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 3);

        var (status, cancelling) = await server.PostAsync($"/v1/batches/{id}/cancel");

        Assert.Equal(200, status);
        Assert.True(cancelling.GetProperty("status").GetString() is "cancelling" or "finalizing" or "cancelled", cancelling.ToString());
        var ended = await server.WaitForEndAsync(id);
        Assert.Equal("cancelled", ended.GetProperty("status").GetString());
        var counts = ended.GetProperty("request_counts");
        var completed = counts.GetProperty("completed").GetInt64();
        Assert.InRange(completed, 3, 199);
        Assert.Equal(200, completed + counts.GetProperty("failed").GetInt64());
        Assert.Equal(JsonValueKind.Number, ended.GetProperty("cancelled_at").ValueKind);

        var (_, results) = await server.GetAsync($"/v1/batches/{id}/results?limit=1000");
        var statuses = results.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("status").GetString()).ToList();
        Assert.Equal(completed, statuses.Count(s => s == "succeeded"));
        Assert.Equal(200 - completed, statuses.Count(s => s == "cancelled"));
        var (againStatus, again) = await server.PostAsync($"/v1/batches/{id}/cancel");
        Assert.Equal((200, "cancelled"), (againStatus, again.GetProperty("status").GetString()));
    }

    [Fact]
    public async Task CancellingACompletedBatch_IsAConflict()
    {
        await using var server = await RunningServer.StartAsync();
        var (_, created) = await server.PostAsync("/v1/batches", TwoPrompts);
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(id);

        var (status, error) = await server.PostAsync($"/v1/batches/{id}/cancel");

        Assert.Equal(409, status);
        Assert.Contains("completed", error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task RetryFailed_MakesALinkedBatchOfOnlyTheFailedRequests_Once()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 10 });
        var (_, created) = await server.PostAsync("/v1/batches", """
            {"model":"m","metadata":{"job":"j"},"requests":[
              {"custom_id":"short","prompt":"hi"},
              {"custom_id":"long1","prompt":"a prompt that is far longer than the small context of this model"},
              {"custom_id":"long2","body":{"messages":[{"role":"user","content":"another prompt far longer than the context allows"}],"max_tokens":7}}]}
            """);
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(id);

        var (status, retry) = await server.PostAsync($"/v1/batches/{id}/retry_failed");
        var (_, again) = await server.PostAsync($"/v1/batches/{id}/retry_failed");

        Assert.Equal(200, status);
        var retryId = retry.GetProperty("id").GetString()!;
        Assert.NotEqual(id, retryId);
        Assert.Equal(retryId, again.GetProperty("id").GetString());
        Assert.Equal(2, retry.GetProperty("total_items").GetInt64());
        Assert.Equal((id, "j"), (retry.GetProperty("metadata").GetProperty("retry_of").GetString(), retry.GetProperty("metadata").GetProperty("job").GetString()));
        await server.WaitForEndAsync(retryId);
        var (_, results) = await server.GetAsync($"/v1/batches/{retryId}/results");
        Assert.Equal(["long1", "long2"], results.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("custom_id").GetString()));
        var (_, one) = await server.GetAsync($"/v1/batches/{retryId}/results/long2");
        Assert.Equal(400, one.GetProperty("response").GetProperty("status_code").GetInt32());
    }

    [Fact]
    public async Task RetryFailed_OfABatchWithoutFailures_OrStillRunning_IsRefused()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(5), RequestsPerMinute = 60 });
        var (_, slow) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{string.Join(",", Enumerable.Range(0, 50).Select(i => $$"""{"custom_id":"r{{i}}","prompt":"p"}"""))}}]}""");
        var (runningStatus, running) = await server.PostAsync($"/v1/batches/{slow.GetProperty("id").GetString()}/retry_failed");
        await server.PostAsync($"/v1/batches/{slow.GetProperty("id").GetString()}/cancel");

        Assert.Equal(409, runningStatus);
        Assert.Equal("batch_not_ended", running.GetProperty("error").GetProperty("code").GetString());

        var (_, quick) = await server.PostAsync("/v1/batches", """{"model":"m","requests":[{"custom_id":"only","prompt":"p"}]}""");
        await server.WaitForEndAsync(quick.GetProperty("id").GetString()!);
        var (cleanStatus, clean) = await server.PostAsync($"/v1/batches/{quick.GetProperty("id").GetString()}/retry_failed");
        Assert.Equal((400, "nothing_to_retry"), (cleanStatus, clean.GetProperty("error").GetProperty("code").GetString()));
    }

    [Fact]
    public async Task ABudget_EndsWhatWouldPassIt_AsBudgetExceeded_AndTheBatchSaysSo()
    {
        await using var server = await RunningServer.StartAsync();
        // gpt-4o-mini with max_tokens 100: each request may cost about 100 × $0.60 / 1M = $0.00006 plus its prompt.
        var requests = string.Join(",", Enumerable.Range(0, 40).Select(i => $$$"""{"custom_id":"r{{{i}}}","body":{"messages":[{"role":"user","content":"p"}],"max_tokens":100}}"""));

        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"gpt-4o-mini","budget_usd":0.0006,"requests":[{{requests}}]}""");
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        Assert.Equal(0.0006m, created.GetProperty("budget_usd").GetDecimal());
        var over = ended.GetProperty("budget_exceeded_requests").GetInt64();
        var completed = ended.GetProperty("request_counts").GetProperty("completed").GetInt64();
        // At least what fits at the most each may cost; more as answers come in under their estimate.
        Assert.InRange(completed, 9, 39);
        Assert.Equal(40 - completed, over);
        Assert.True(ended.GetProperty("cost_usd").GetDecimal() is > 0 and <= 0.0006m, ended.ToString());
        var (_, results) = await server.GetAsync($"/v1/batches/{ended.GetProperty("id").GetString()}/results?limit=100");
        var failed = results.GetProperty("data").EnumerateArray().Where(r => r.GetProperty("status").GetString() == "failed").ToList();
        Assert.Equal(over, failed.Count);
        Assert.All(failed, r => Assert.Equal("budget_exceeded", r.GetProperty("error").GetProperty("code").GetString()));
        Assert.Equal(ended.GetProperty("cost_usd").GetDecimal(), results.GetProperty("data").EnumerateArray().Sum(r => r.GetProperty("cost_usd").GetDecimal()));
    }

    [Fact]
    public async Task ABodyWithInvalidUtf8InAName_IsRefusedWith400_NotAFault()
    {
        await using var server = await RunningServer.StartAsync();
        using var http = server.Client(RunningServer.Key);
        var body = "{\"model\":\"gpt-4o-mini\",\"requ"u8.ToArray().Concat(new byte[] { 0xBD, 0xA2 }).Concat("ests\":[]}"u8.ToArray()).ToArray();
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");

        using var response = await http.PostAsync("/v1/batches", content, TestContext.Current.CancellationToken);

        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid Unicode", await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
    }
}
