using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;
using static Shepherd.Simulator.Tests.SimulatedBatchCalls;

namespace Shepherd.Simulator.Tests;

/// <summary>The simulator's OpenAI files and batches, on a fake clock.</summary>
public sealed class OpenAIBatchTests
{
    private static readonly TimeSpan Latency = TimeSpan.FromSeconds(10);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));

    private SimulatedBatchCalls Calls(SimulatorOptions? options = null, int seed = 1) =>
        new(Simulators.Create(options ?? new SimulatorOptions { BatchLatency = Latency }, _time, seed));

    [Fact]
    public async Task AnUpload_IsAFileObject_AndItsContentReadsBack()
    {
        var calls = Calls();

        var (status, file) = await calls.UploadAsync("batch", ChatLine("a", "hi"));

        Assert.Equal(200, status);
        Assert.StartsWith("file-", file.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal(("file", "input.jsonl", "batch", "processed"), (file.GetProperty("object").GetString(), file.GetProperty("filename").GetString(),
            file.GetProperty("purpose").GetString(), file.GetProperty("status").GetString()));
        Assert.Equal(_time.GetUtcNow().ToUnixTimeSeconds(), file.GetProperty("created_at").GetInt64());
        Assert.Equal(ChatLine("a", "hi").Length + 1, file.GetProperty("bytes").GetInt32());
        Assert.Equal(file.GetRawText(), (await calls.GetAsync($"/v1/files/{file.GetProperty("id").GetString()}")).GetRawText());
        Assert.Equal("a", Assert.Single(await calls.FileLinesAsync(file.GetProperty("id"))).GetProperty("custom_id").GetString());
    }

    [Fact]
    public async Task ABatch_IsInProgressUntilItsLatency_ThenCompleted_WithOutputAndErrorFiles()
    {
        var calls = Calls(new SimulatorOptions { BatchLatency = Latency, ContextTokens = 20 });
        var lines = Enumerable.Range(0, 20).Select(i => ChatLine($"r{i}", $"Rate review {i}")).Append(ChatLine("long", string.Join(' ', Enumerable.Repeat("verbose", 100)))).ToArray();

        var created = await calls.CreateAsync(lines);
        var id = created.GetProperty("id").GetString()!;
        _time.Advance(Latency / 2);
        var halfway = await calls.GetAsync($"/v1/batches/{id}");
        _time.Advance((Latency / 2) - TimeSpan.FromMilliseconds(1));
        var justBefore = await calls.GetAsync($"/v1/batches/{id}");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var ended = await calls.GetAsync($"/v1/batches/{id}");

        Assert.StartsWith("batch_", id, StringComparison.Ordinal);
        Assert.Equal(("batch", Chat, "24h", "gpt-4o-mini"), (created.GetProperty("object").GetString(), created.GetProperty("endpoint").GetString(),
            created.GetProperty("completion_window").GetString(), created.GetProperty("model").GetString()));
        Assert.Equal((21, 0, 0), Counts(created));
        Assert.InRange(Counts(halfway).Completed, 1, 19);
        Assert.Equal(["in_progress", "in_progress", "in_progress", "completed"], new[] { created, halfway, justBefore, ended }.Select(b => b.GetProperty("status").GetString()));
        Assert.Equal((21, 20, 1), Counts(ended));
        var start = _time.GetUtcNow() - Latency;
        Assert.Equal(start.ToUnixTimeSeconds(), ended.GetProperty("in_progress_at").GetInt64());
        Assert.Equal(_time.GetUtcNow().ToUnixTimeSeconds(), ended.GetProperty("completed_at").GetInt64());
        Assert.Equal((start + TimeSpan.FromHours(24)).ToUnixTimeSeconds(), ended.GetProperty("expires_at").GetInt64());
        Assert.Equal(JsonValueKind.Null, created.GetProperty("output_file_id").ValueKind);
        Assert.True(ended.GetProperty("usage").GetProperty("total_tokens").GetInt64() > 0);

        var output = await calls.FileLinesAsync(ended.GetProperty("output_file_id"));
        Assert.Equal(Enumerable.Range(0, 20).Select(i => $"r{i}"), output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.All(output, line =>
        {
            Assert.StartsWith("batch_req_", line.GetProperty("id").GetString(), StringComparison.Ordinal);
            Assert.Equal(200, line.GetProperty("response").GetProperty("status_code").GetInt32());
            Assert.StartsWith("req_", line.GetProperty("response").GetProperty("request_id").GetString(), StringComparison.Ordinal);
            Assert.Equal("gpt-4o-mini", line.GetProperty("response").GetProperty("body").GetProperty("model").GetString());
            Assert.Equal(JsonValueKind.Null, line.GetProperty("error").ValueKind);
        });
        var error = Assert.Single(await calls.FileLinesAsync(ended.GetProperty("error_file_id")));
        Assert.Equal(("long", 400), (error.GetProperty("custom_id").GetString(), error.GetProperty("response").GetProperty("status_code").GetInt32()));
        Assert.Equal("context_length_exceeded", error.GetProperty("response").GetProperty("body").GetProperty("error").GetProperty("code").GetString());
        var outputFile = await calls.GetAsync($"/v1/files/{ended.GetProperty("output_file_id").GetString()}");
        Assert.Equal("batch_output", outputFile.GetProperty("purpose").GetString());
    }

    [Fact]
    public async Task Cancel_KeepsTheLinesFinishedBeforeIt_AndCancelsTheRest_AfterItsLatency()
    {
        var calls = Calls(new SimulatorOptions { BatchLatency = Latency, BatchCancelLatency = TimeSpan.FromSeconds(3) });
        var created = await calls.CreateAsync([.. Enumerable.Range(0, 50).Select(i => ChatLine($"r{i}", $"Rate review {i}"))]);
        var id = created.GetProperty("id").GetString()!;
        _time.Advance(TimeSpan.FromSeconds(4));
        var finishedBefore = Counts(await calls.GetAsync($"/v1/batches/{id}")).Completed;

        var (status, cancelling) = await calls.SendAsync("POST", $"/v1/batches/{id}/cancel");
        _time.Advance(TimeSpan.FromSeconds(2));
        var stillCancelling = await calls.GetAsync($"/v1/batches/{id}");
        var (_, again) = await calls.SendAsync("POST", $"/v1/batches/{id}/cancel");
        _time.Advance(TimeSpan.FromSeconds(1));
        var cancelled = await calls.GetAsync($"/v1/batches/{id}");
        _time.Advance(Latency);
        var later = await calls.GetAsync($"/v1/batches/{id}");

        Assert.Equal(200, status);
        Assert.InRange(finishedBefore, 1, 49);
        Assert.Equal(["cancelling", "cancelling", "cancelling", "cancelled", "cancelled"], new[] { cancelling, stillCancelling, again, cancelled, later }.Select(b => b.GetProperty("status").GetString()));
        Assert.Equal(cancelling.GetProperty("cancelling_at").GetInt64(), again.GetProperty("cancelling_at").GetInt64());
        Assert.Equal(_time.GetUtcNow().ToUnixTimeSeconds() - 10, cancelled.GetProperty("cancelled_at").GetInt64());
        Assert.Equal((50, finishedBefore, 50 - finishedBefore), Counts(cancelled));
        Assert.Equal(cancelled.GetRawText(), later.GetRawText());
        Assert.Equal(finishedBefore, (await calls.FileLinesAsync(cancelled.GetProperty("output_file_id"))).Count);
        var errors = await calls.FileLinesAsync(cancelled.GetProperty("error_file_id"));
        Assert.Equal(50 - finishedBefore, errors.Count);
        Assert.All(errors, line =>
        {
            Assert.Equal(JsonValueKind.Null, line.GetProperty("response").ValueKind);
            Assert.Equal("batch_cancelled", line.GetProperty("error").GetProperty("code").GetString());
        });
    }

    [Fact]
    public async Task CancellingAnEndedBatch_LeavesItAsItIs()
    {
        var calls = Calls();
        var id = (await calls.CreateAsync(ChatLine("a", "hi"))).GetProperty("id").GetString()!;
        _time.Advance(Latency);

        var (status, answer) = await calls.SendAsync("POST", $"/v1/batches/{id}/cancel");

        Assert.Equal((200, "completed"), (status, answer.GetProperty("status").GetString()));
        Assert.Equal(JsonValueKind.Null, answer.GetProperty("cancelling_at").ValueKind);
    }

    [Fact]
    public async Task LinesMeetTheServerErrors_AndLandInTheErrorFileWithTheirStatus()
    {
        var (calls, ended) = await RunToTheEndAsync(new SimulatorOptions { BatchLatency = Latency, Error500Rate = 1 });

        Assert.Equal("completed", ended.GetProperty("status").GetString());
        Assert.Equal((2, 0, 2), Counts(ended));
        Assert.Equal(JsonValueKind.Null, ended.GetProperty("output_file_id").ValueKind);
        Assert.All(await calls.FileLinesAsync(ended.GetProperty("error_file_id")), line =>
        {
            Assert.Equal(500, line.GetProperty("response").GetProperty("status_code").GetInt32());
            Assert.Equal("api_error", line.GetProperty("response").GetProperty("body").GetProperty("error").GetProperty("type").GetString());
        });
    }

    [Fact]
    public async Task ExpiredLines_EndTheBatchExpired_AndAreInTheErrorFile()
    {
        var (calls, ended) = await RunToTheEndAsync(new SimulatorOptions { BatchLatency = Latency, BatchExpireShare = 1 });

        Assert.Equal("expired", ended.GetProperty("status").GetString());
        Assert.Equal(_time.GetUtcNow().ToUnixTimeSeconds(), ended.GetProperty("expired_at").GetInt64());
        Assert.Equal(JsonValueKind.Null, ended.GetProperty("completed_at").ValueKind);
        Assert.Equal((2, 0, 2), Counts(ended));
        Assert.All(await calls.FileLinesAsync(ended.GetProperty("error_file_id")), line =>
            Assert.Equal("batch_expired", line.GetProperty("error").GetProperty("code").GetString()));
    }

    [Fact]
    public async Task BatchLines_AreNotCountedAgainstTheRealtimeLimits()
    {
        var simulator = Simulators.Create(new SimulatorOptions { BatchLatency = TimeSpan.Zero, RequestsPerMinute = 60, TokensPerMinute = 1000 }, _time);
        var calls = new SimulatedBatchCalls(simulator);

        var batch = await calls.CreateAsync([.. Enumerable.Range(0, 30).Select(i => ChatLine($"r{i}", $"Rate review {i}"))]);
        var realtime = await simulator.HandleAsync(new SimulatedRequest("POST", Chat, """{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"""u8.ToArray()), TestContext.Current.CancellationToken);

        Assert.Equal((30, 30, 0), Counts(await calls.GetAsync($"/v1/batches/{batch.GetProperty("id").GetString()}")));
        Assert.Equal(200, realtime.StatusCode);
        var stats = simulator.Stats();
        Assert.Equal(new BatchStats(1, 30, 0, 0, 0), stats.Batch);
        Assert.Equal(0, stats.Duplicates);
    }

    [Fact]
    public async Task Listing_PagesNewestFirst_WithAllFiveKeys()
    {
        var calls = Calls();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await calls.CreateAsync(ChatLine("a", $"hi {i}"))).GetProperty("id").GetString()!);
        }

        ids.Reverse();
        var first = await calls.GetAsync("/v1/batches?limit=2");
        var second = await calls.GetAsync($"/v1/batches?limit=2&after={first.GetProperty("last_id").GetString()}");
        var last = await calls.GetAsync($"/v1/batches?limit=2&after={second.GetProperty("last_id").GetString()}");
        var all = await calls.GetAsync("/v1/batches");

        Assert.Equal(["object", "data", "first_id", "last_id", "has_more"], first.EnumerateObject().Select(p => p.Name));
        Assert.Equal(ids[..2], Ids(first));
        Assert.Equal((ids[0], ids[1], true), (first.GetProperty("first_id").GetString(), first.GetProperty("last_id").GetString(), first.GetProperty("has_more").GetBoolean()));
        Assert.Equal(ids[2..4], Ids(second));
        Assert.True(second.GetProperty("has_more").GetBoolean());
        Assert.Equal([ids[4]], Ids(last));
        Assert.False(last.GetProperty("has_more").GetBoolean());
        Assert.Equal(ids, Ids(all));
        Assert.Equal(400, (await calls.SendAsync("GET", "/v1/batches?limit=0")).Status);
        Assert.Equal(400, (await calls.SendAsync("GET", "/v1/batches?limit=101")).Status);
        Assert.Equal(400, (await calls.SendAsync("GET", "/v1/batches?after=batch_unknown")).Status);
    }

    [Theory]
    [InlineData("this is not json", "invalid_json_line", 2)]
    [InlineData("""{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""", "duplicate_custom_id", 2)]
    [InlineData("""{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{"model":"m"}}""", "url_mismatch", 2)]
    [InlineData("""{"custom_id":"b","method":"GET","url":"/v1/chat/completions","body":{"model":"m"}}""", "invalid_json_line", 2)]
    public async Task ABadLine_RefusesTheCreate_NamingTheLine(string second, string code, int line)
    {
        var calls = Calls();
        var (_, file) = await calls.UploadAsync("batch", ChatLine("a", "hi"), second);

        var (status, refused) = await calls.SendAsync("POST", "/v1/batches", $$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"{{Chat}}","completion_window":"24h"}""");

        Assert.Equal(400, status);
        var error = refused.GetProperty("error");
        Assert.Equal(["message", "type", "param", "code"], error.EnumerateObject().Select(p => p.Name));
        Assert.Equal((code, "invalid_request_error"), (error.GetProperty("code").GetString(), error.GetProperty("type").GetString()));
        Assert.StartsWith($"Line {line} ", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty((await calls.GetAsync("/v1/batches")).GetProperty("data").EnumerateArray());
    }

    [Theory]
    [InlineData("""{"input_file_id":"file-nope","endpoint":"/v1/chat/completions","completion_window":"24h"}""", 404, "input_file_id")]
    [InlineData("""{"input_file_id":"FILE","endpoint":"/v1/images","completion_window":"24h"}""", 400, "endpoint")]
    [InlineData("""{"input_file_id":"FILE","endpoint":"/v1/chat/completions","completion_window":"1h"}""", 400, "completion_window")]
    [InlineData("""{"endpoint":"/v1/chat/completions","completion_window":"24h"}""", 400, "input_file_id")]
    [InlineData("""{"input_file_id":"FILE","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"k":1}}""", 400, "metadata")]
    public async Task ABadCreate_IsRefused_NamingTheField(string body, int expected, string param)
    {
        var calls = Calls();
        var (_, file) = await calls.UploadAsync("batch", ChatLine("a", "hi"));

        var (status, refused) = await calls.SendAsync("POST", "/v1/batches", body.Replace("FILE", file.GetProperty("id").GetString(), StringComparison.Ordinal));

        Assert.Equal(expected, status);
        Assert.Equal(param, refused.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task UnknownIdsAndBadUploads_GetOpenAIErrors()
    {
        var calls = Calls();

        Assert.Equal(404, (await calls.SendAsync("GET", "/v1/batches/batch_nope")).Status);
        Assert.Equal(404, (await calls.SendAsync("POST", "/v1/batches/batch_nope/cancel")).Status);
        Assert.Equal(404, (await calls.SendAsync("GET", "/v1/files/file-nope")).Status);
        Assert.Equal(404, (await calls.SendAsync("GET", "/v1/files/file-nope/content")).Status);
        Assert.Equal(405, (await calls.SendAsync("DELETE", "/v1/batches/batch_nope")).Status);
        var (purposeStatus, purpose) = await calls.UploadAsync("fine-tune", ChatLine("a", "hi"));
        Assert.Equal((400, "purpose"), (purposeStatus, purpose.GetProperty("error").GetProperty("param").GetString()));
        var (jsonStatus, json) = await calls.SendAsync("POST", "/v1/files", "{}");
        Assert.Equal(400, jsonStatus);
        Assert.Contains("multipart/form-data", json.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        // A message batch is not an OpenAI batch.
        var message = await calls.CreateMessagesAsync(MessageRequest("m", "hi"));
        Assert.Equal(404, (await calls.SendAsync("GET", $"/v1/batches/{message.GetProperty("id").GetString()}")).Status);
    }

    /// <summary>Creates a batch of two lines on a simulator with <paramref name="options"/> and lets its latency pass; returns the ended batch.</summary>
    private async Task<(SimulatedBatchCalls Calls, JsonElement Ended)> RunToTheEndAsync(SimulatorOptions options)
    {
        var calls = Calls(options);
        var created = await calls.CreateAsync(ChatLine("a", "hi"), ChatLine("b", "yo"));
        _time.Advance(options.BatchLatency);
        return (calls, await calls.GetAsync($"/v1/batches/{created.GetProperty("id").GetString()}"));
    }

    private static (int Total, int Completed, int Failed) Counts(JsonElement batch)
    {
        var counts = batch.GetProperty("request_counts");
        return (counts.GetProperty("total").GetInt32(), counts.GetProperty("completed").GetInt32(), counts.GetProperty("failed").GetInt32());
    }

    private static List<string> Ids(JsonElement page) => [.. page.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()!)];
}
