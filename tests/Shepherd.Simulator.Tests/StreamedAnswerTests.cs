using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;

namespace Shepherd.Simulator.Tests;

/// <summary>Answers asked for as a stream: server-sent events in each endpoint's shape, with the same text and usage a whole answer has.</summary>
public sealed class StreamedAnswerTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The events of a stream: each one's name (null where the dialect names none) and its data.</summary>
    private static List<(string? Name, string Data)> Events(SimulatedResponse response)
    {
        Assert.Equal((200, "text/event-stream"), (response.StatusCode, response.ContentType));
        var events = new List<(string?, string)>();
        foreach (var block in Encoding.UTF8.GetString(response.Body).Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = block.Split('\n');
            var name = lines.FirstOrDefault(l => l.StartsWith("event: ", StringComparison.Ordinal))?["event: ".Length..];
            events.Add((name, lines.Single(l => l.StartsWith("data: ", StringComparison.Ordinal))["data: ".Length..]));
        }

        return events;
    }

    private Task<SimulatedResponse> PostAsync(string path, string body) =>
        Simulators.Create(time: _time).HandleAsync(new SimulatedRequest("POST", path, Encoding.UTF8.GetBytes(body), "Bearer k"), Ct);

    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Rate it"}],"max_tokens":9,"stream":true}""")]
    [InlineData("/v1/completions", """{"model":"gpt-4o-mini","prompt":"Rate it","max_tokens":9,"stream":true}""")]
    public async Task OpenAIChunks_EndInDone_AndCarryUsageOnlyWhenAsked(string path, string body)
    {
        var plain = Events(await PostAsync(path, body));
        var counted = Events(await PostAsync(path, body.Replace("\"stream\":true", "\"stream\":true,\"stream_options\":{\"include_usage\":true}", StringComparison.Ordinal)));

        Assert.Equal("[DONE]", plain[^1].Data);
        Assert.All(plain[..^1], e => Assert.False(JsonDocument.Parse(e.Data).RootElement.TryGetProperty("usage", out _)));
        var usage = JsonDocument.Parse(counted[^2].Data).RootElement;
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(9, usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var text = string.Concat(counted[..^2].Select(e => JsonDocument.Parse(e.Data).RootElement.GetProperty("choices")[0])
            .Select(choice => choice.TryGetProperty("delta", out var delta) ? (delta.TryGetProperty("content", out var content) ? content.GetString() : "") : choice.GetProperty("text").GetString()));
        Assert.Equal(9, text.TrimEnd('.').Split(' ').Length);
        Assert.Equal("length", JsonDocument.Parse(counted[^3].Data).RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task TheResponsesStream_NamesItsEvents_InOrder_AndCompletesWithTheWholeTextAndUsage()
    {
        var events = Events(await PostAsync("/v1/responses", """{"model":"gpt-4o-mini","input":"Rate it","max_output_tokens":9,"stream":true}"""));

        Assert.Equal("response.created", events[0].Name);
        Assert.Equal("response.completed", events[^1].Name);
        Assert.All(events, e => Assert.Equal(e.Name, JsonDocument.Parse(e.Data).RootElement.GetProperty("type").GetString()));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => JsonDocument.Parse(e.Data).RootElement.GetProperty("sequence_number").GetInt32()));
        var deltas = string.Concat(events.Where(e => e.Name == "response.output_text.delta").Select(e => JsonDocument.Parse(e.Data).RootElement.GetProperty("delta").GetString()));
        var completed = JsonDocument.Parse(events[^1].Data).RootElement.GetProperty("response");
        Assert.Equal(deltas, completed.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(9, completed.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task AnEmbedding_AskedAsAStream_IsAnsweredWhole()
    {
        var response = await PostAsync("/v1/embeddings", """{"model":"text-embedding-3-small","input":"Rate it","stream":true}""");

        Assert.Equal("application/json", response.ContentType);
        Assert.Equal("list", JsonDocument.Parse(response.Body).RootElement.GetProperty("object").GetString());
    }

    [Fact]
    public async Task OverHttp_TheEventsGoOutOneAtATime_AtTheStreamInterval()
    {
        var provider = Simulators.Create(new SimulatorOptions { StreamInterval = TimeSpan.FromSeconds(1) }, _time);
        await using var server = await SimulatorServer.StartAsync(provider, 0, Ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Rate it"}],"max_tokens":9,"stream":true}""", Encoding.UTF8, "application/json"),
        };

        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        await using var body = await response.Content.ReadAsStreamAsync(Ct);
        var received = new StringBuilder();
        var buffer = new byte[1 << 16];
        var advances = 0;
        while (true)
        {
            var reading = body.ReadAsync(buffer, Ct).AsTask();
            // Nothing more comes until the clock moves: the next event waits for its interval.
            while (await Task.WhenAny(reading, Task.Delay(TimeSpan.FromMilliseconds(200), TimeProvider.System, Ct)) != reading)
            {
                _time.Advance(TimeSpan.FromSeconds(1));
                advances++;
            }

            var count = await reading;
            if (count == 0)
            {
                break;
            }

            received.Append(Encoding.UTF8.GetString(buffer, 0, count));
        }

        // Nine words, four an event: three chunks of text a second apart, then the finish chunk and [DONE] at once.
        Assert.Equal(5, received.ToString().Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.True(advances >= 3, $"{advances} advances of the clock");
        Assert.EndsWith("data: [DONE]\n\n", received.ToString(), StringComparison.Ordinal);
    }
}
