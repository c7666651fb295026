using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;
using static Shepherd.Simulator.Tests.SimulatedBatchCalls;

namespace Shepherd.Simulator.Tests;

/// <summary>The simulator's Anthropic message batches, on a fake clock.</summary>
public sealed class AnthropicBatchTests
{
    private static readonly TimeSpan Latency = TimeSpan.FromSeconds(10);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));

    private SimulatedBatchCalls Calls(SimulatorOptions? options = null) =>
        new(Simulators.Create(options ?? new SimulatorOptions { BatchLatency = Latency }, _time));

    [Fact]
    public async Task AMessageBatch_CountsEveryRequestProcessingUntilItEnds_ThenServesItsResults()
    {
        var calls = Calls(new SimulatorOptions { BatchLatency = Latency, ContextTokens = 20 });

        var created = await calls.CreateMessagesAsync(MessageRequest("first", "hi"), MessageRequest("long", string.Join(' ', Enumerable.Repeat("verbose", 100))), MessageRequest("third", "yo"));
        var id = created.GetProperty("id");
        _time.Advance(Latency - TimeSpan.FromMilliseconds(1));
        var running = await calls.GetAsync($"/v1/messages/batches/{id.GetString()}");
        var (early, tooEarly) = await calls.SendAsync("GET", $"/v1/messages/batches/{id.GetString()}/results");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var ended = await calls.GetAsync($"/v1/messages/batches/{id.GetString()}");

        Assert.StartsWith("msgbatch_", id.GetString(), StringComparison.Ordinal);
        Assert.Equal(("message_batch", "in_progress"), (created.GetProperty("type").GetString(), created.GetProperty("processing_status").GetString()));
        Assert.Equal((3, 0, 0, 0, 0), Counts(created));
        Assert.Equal((3, 0, 0, 0, 0), Counts(running));
        Assert.Equal(JsonValueKind.Null, running.GetProperty("results_url").ValueKind);
        Assert.Equal((400, "invalid_request_error"), (early, tooEarly.GetProperty("error").GetProperty("type").GetString()));
        Assert.Equal("ended", ended.GetProperty("processing_status").GetString());
        Assert.Equal((0, 2, 1, 0, 0), Counts(ended));
        Assert.Equal("2026-11-28T12:00:00Z", ended.GetProperty("created_at").GetString());
        Assert.Equal("2026-11-29T12:00:00Z", ended.GetProperty("expires_at").GetString());
        Assert.Equal("2026-11-28T12:00:10Z", ended.GetProperty("ended_at").GetString());
        Assert.Equal(JsonValueKind.Null, ended.GetProperty("cancel_initiated_at").ValueKind);
        Assert.Equal($"http://sim.test/v1/messages/batches/{id.GetString()}/results", ended.GetProperty("results_url").GetString());

        var results = await calls.ResultsAsync(id);
        Assert.Equal(["first", "long", "third"], results.Keys);
        Assert.Equal("succeeded", results["first"].GetProperty("type").GetString());
        var message = results["first"].GetProperty("message");
        Assert.Equal(("message", "claude-haiku-4-5"), (message.GetProperty("type").GetString(), message.GetProperty("model").GetString()));
        Assert.Equal("errored", results["long"].GetProperty("type").GetString());
        var error = results["long"].GetProperty("error");
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("error").GetProperty("type").GetString());
        Assert.StartsWith("req_", error.GetProperty("request_id").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancel_GoesThroughCanceling_KeepsWhatFinished_AndCancelsTheRest()
    {
        var calls = Calls(new SimulatorOptions { BatchLatency = Latency, BatchCancelLatency = TimeSpan.FromSeconds(1) });
        var created = await calls.CreateMessagesAsync([.. Enumerable.Range(0, 40).Select(i => MessageRequest($"r{i}", $"Say {i}"))]);
        var id = created.GetProperty("id").GetString()!;
        _time.Advance(TimeSpan.FromSeconds(5));

        var (status, canceling) = await calls.SendAsync("POST", $"/v1/messages/batches/{id}/cancel");
        _time.Advance(TimeSpan.FromSeconds(1));
        var ended = await calls.GetAsync($"/v1/messages/batches/{id}");
        var (_, again) = await calls.SendAsync("POST", $"/v1/messages/batches/{id}/cancel");

        Assert.Equal((200, "canceling"), (status, canceling.GetProperty("processing_status").GetString()));
        Assert.Equal("2026-11-28T12:00:05Z", canceling.GetProperty("cancel_initiated_at").GetString());
        Assert.Equal((40, 0, 0, 0, 0), Counts(canceling));
        Assert.Equal("ended", ended.GetProperty("processing_status").GetString());
        Assert.Equal("2026-11-28T12:00:06Z", ended.GetProperty("ended_at").GetString());
        var (_, succeeded, _, canceled, _) = Counts(ended);
        Assert.InRange(succeeded, 1, 39);
        Assert.Equal(40, succeeded + canceled);
        Assert.Equal(ended.GetRawText(), again.GetRawText());
        var results = await calls.ResultsAsync(ended.GetProperty("id"));
        Assert.Equal(canceled, results.Values.Count(r => r.GetProperty("type").GetString() == "canceled"));
        Assert.Equal(succeeded, results.Values.Count(r => r.GetProperty("type").GetString() == "succeeded"));
    }

    [Fact]
    public async Task ExpiredAndFailedLines_EndAsExpiredAndErroredResults()
    {
        var calls = Calls(new SimulatorOptions { BatchLatency = Latency, BatchExpireShare = 0.5, Error529Rate = 1 });
        var created = await calls.CreateMessagesAsync([.. Enumerable.Range(0, 40).Select(i => MessageRequest($"r{i}", $"Say {i}"))]);
        _time.Advance(Latency);

        var ended = await calls.GetAsync($"/v1/messages/batches/{created.GetProperty("id").GetString()}");
        var results = await calls.ResultsAsync(created.GetProperty("id"));

        var (_, succeeded, errored, _, expired) = Counts(ended);
        Assert.Equal(("ended", 0), (ended.GetProperty("processing_status").GetString(), succeeded));
        Assert.InRange(expired, 1, 39);
        Assert.Equal(40, errored + expired);
        Assert.Equal(expired, results.Values.Count(r => r.GetProperty("type").GetString() == "expired"));
        Assert.All(results.Values.Where(r => r.GetProperty("type").GetString() == "errored"), r =>
            Assert.Equal("overloaded_error", r.GetProperty("error").GetProperty("error").GetProperty("type").GetString()));
    }

    [Fact]
    public async Task Listing_PagesNewestFirst_BeforeAndAfterAnId()
    {
        var calls = Calls();
        var ids = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            ids.Add((await calls.CreateMessagesAsync(MessageRequest("a", $"hi {i}"))).GetProperty("id").GetString()!);
        }

        ids.Reverse();
        var first = await calls.GetAsync("/v1/messages/batches?limit=3");
        var after = await calls.GetAsync($"/v1/messages/batches?limit=3&after_id={first.GetProperty("last_id").GetString()}");
        var before = await calls.GetAsync($"/v1/messages/batches?limit=1&before_id={ids[3]}");
        var beforeAll = await calls.GetAsync($"/v1/messages/batches?limit=5&before_id={ids[3]}");

        Assert.Equal(ids[..3], Ids(first));
        Assert.Equal((ids[0], ids[2], true), (first.GetProperty("first_id").GetString(), first.GetProperty("last_id").GetString(), first.GetProperty("has_more").GetBoolean()));
        Assert.Equal([ids[3]], Ids(after));
        Assert.False(after.GetProperty("has_more").GetBoolean());
        Assert.Equal([ids[2]], Ids(before));
        Assert.True(before.GetProperty("has_more").GetBoolean());
        Assert.Equal(ids[..3], Ids(beforeAll));
        Assert.False(beforeAll.GetProperty("has_more").GetBoolean());
        Assert.Equal(400, (await calls.SendAsync("GET", $"/v1/messages/batches?before_id={ids[0]}&after_id={ids[1]}")).Status);
        Assert.Equal(400, (await calls.SendAsync("GET", "/v1/messages/batches?limit=1001")).Status);
    }

    [Theory]
    [InlineData("""{"requests":[]}""", "requests")]
    [InlineData("""{"requests":[{"custom_id":"has space","params":{"model":"m"}}]}""", "custom_id")]
    [InlineData("""{"requests":[{"custom_id":"a","params":{"model":"m"}},{"custom_id":"a","params":{"model":"m"}}]}""", "already used")]
    [InlineData("""{"requests":[{"custom_id":"a"}]}""", "params")]
    [InlineData("not json", "JSON")]
    public async Task ABadCreate_IsAnInvalidRequest_AndCreatesNothing(string body, string named)
    {
        var calls = Calls();

        var (status, refused) = await calls.SendAsync("POST", "/v1/messages/batches", body);

        Assert.Equal(400, status);
        Assert.Equal("error", refused.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", refused.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains(named, refused.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty((await calls.GetAsync("/v1/messages/batches")).GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task UnknownIds_AreNotFound_InAnthropicsEnvelope()
    {
        var calls = Calls();
        var openAI = await calls.CreateAsync(ChatLine("a", "hi"));

        foreach (var (method, path) in new[] { ("GET", "/v1/messages/batches/msgbatch_nope"), ("POST", "/v1/messages/batches/msgbatch_nope/cancel"),
            ("GET", "/v1/messages/batches/msgbatch_nope/results"), ("GET", $"/v1/messages/batches/{openAI.GetProperty("id").GetString()}") })
        {
            var (status, body) = await calls.SendAsync(method, path);
            Assert.Equal(404, status);
            Assert.Equal("not_found_error", body.GetProperty("error").GetProperty("type").GetString());
        }
    }

    private static (int Processing, int Succeeded, int Errored, int Canceled, int Expired) Counts(JsonElement batch)
    {
        var c = batch.GetProperty("request_counts");
        return (c.GetProperty("processing").GetInt32(), c.GetProperty("succeeded").GetInt32(), c.GetProperty("errored").GetInt32(),
            c.GetProperty("canceled").GetInt32(), c.GetProperty("expired").GetInt32());
    }

    private static List<string> Ids(JsonElement page) => [.. page.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()!)];
}
