using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Shepherd.Testing;
using static Shepherd.Simulator.Tests.SimulatedBatchCalls;

namespace Shepherd.Simulator.Tests;

/// <summary>The batch APIs through both transports: the content type of an upload, the query of a listing and the host of a results url reach the provider.</summary>
public sealed class BatchTransportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<bool> Transports => [true, false];

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task ABatch_RunsThroughTheTransport(bool overHttp)
    {
        var options = new SimulatorOptions { BatchLatency = TimeSpan.Zero };
        await using var server = overHttp ? await Simulators.StartHttpAsync(options) : null;
        using var client = server is null
            ? new HttpClient(new SimulatorHandler(Simulators.Create(options))) { BaseAddress = new Uri("http://sim.test/") }
            : new HttpClient { BaseAddress = server.BaseUrl };

        using var form = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(ChatLine("a", "hi") + "\n" + ChatLine("b", "yo") + "\n")) { Headers = { ContentType = new MediaTypeHeaderValue("application/jsonl") } }, "file", "in.jsonl" },
        };
        var file = await JsonAsync(await client.PostAsync(new Uri("v1/files", UriKind.Relative), form, Ct));
        var batch = await JsonAsync(await client.PostAsync(new Uri("v1/batches", UriKind.Relative),
            Json($$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"{{Chat}}","completion_window":"24h"}"""), Ct));
        var listed = await JsonAsync(await client.GetAsync(new Uri("v1/batches?limit=1", UriKind.Relative), Ct));
        using var output = await client.GetAsync(new Uri($"v1/files/{batch.GetProperty("output_file_id").GetString()}/content", UriKind.Relative), Ct);
        var message = await JsonAsync(await client.PostAsync(new Uri("v1/messages/batches", UriKind.Relative), Json($$"""{"requests":[{{MessageRequest("m", "hi")}}]}"""), Ct));
        using var results = await client.GetAsync(new Uri(message.GetProperty("results_url").GetString()!), Ct);

        Assert.Equal("completed", batch.GetProperty("status").GetString());
        Assert.Equal(batch.GetProperty("id").GetString(), Assert.Single(listed.GetProperty("data").EnumerateArray()).GetProperty("id").GetString());
        Assert.Equal(HttpStatusCode.OK, output.StatusCode);
        Assert.Equal(2, (await output.Content.ReadAsStringAsync(Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal(new Uri(client.BaseAddress!, $"v1/messages/batches/{message.GetProperty("id").GetString()}/results"), new Uri(message.GetProperty("results_url").GetString()!));
        Assert.Equal(HttpStatusCode.OK, results.StatusCode);
        Assert.Equal("application/x-jsonl", results.Content.Headers.ContentType?.MediaType);
        Assert.Contains("\"succeeded\"", await results.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheStatsEndpoint_CountsBatchLinesAndFlexRequests()
    {
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { BatchLatency = TimeSpan.Zero, BatchExpireShare = 0.5, FlexUnavailableRate = 0.5 }, seed: 3);
        using var client = new HttpClient { BaseAddress = server.BaseUrl };
        var requests = string.Join(",", Enumerable.Range(0, 40).Select(i => MessageRequest($"m{i}", $"Say {i}")));
        using var created = await client.PostAsync(new Uri("v1/messages/batches", UriKind.Relative), Json($$"""{"requests":[{{requests}}]}"""), Ct);
        var flex = new List<HttpStatusCode>();
        for (var i = 0; i < 20; i++)
        {
            using var answer = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), Json("""{"model":"o4-mini","service_tier":"flex","messages":[]}"""), Ct);
            flex.Add(answer.StatusCode);
        }

        var stats = JsonDocument.Parse(await client.GetStringAsync(new Uri("_sim/stats", UriKind.Relative), Ct)).RootElement;

        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        Assert.Equal(1, stats.GetProperty("batch_jobs").GetInt32());
        var (succeeded, expired) = (stats.GetProperty("batch_lines_succeeded").GetInt32(), stats.GetProperty("batch_lines_expired").GetInt32());
        Assert.Equal(40, succeeded + expired);
        Assert.InRange(expired, 1, 39);
        Assert.Equal((0, 0), (stats.GetProperty("batch_lines_errored").GetInt32(), stats.GetProperty("batch_lines_cancelled").GetInt32()));
        Assert.Equal(20, stats.GetProperty("flex_requests").GetInt32());
        Assert.Equal(flex.Count(s => s == HttpStatusCode.TooManyRequests), stats.GetProperty("flex_refusals").GetInt32());
        Assert.InRange(stats.GetProperty("flex_refusals").GetInt32(), 1, 19);
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(Ct);
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonDocument.Parse(text).RootElement.Clone();
        }
    }
}
