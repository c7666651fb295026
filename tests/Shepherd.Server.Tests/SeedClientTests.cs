using System.ClientModel.Primitives;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using OpenAI.Batch;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The calls of a Python batch client written for another inline batch service (an aiohttp
/// <c>HolySheepBatchClient</c> with <c>PartialBatchResult</c> and a chunked export), made
/// exactly as it makes them, reading exactly the fields it reads: create, status, wait, the
/// failed batch's <c>error</c>, the ended batch's <c>results</c>, and the chunks of an export.
/// </summary>
public sealed class SeedClientTests
{
    private const string Template = "Analysiere diese Produktbewertung und extrahiere: Sentiment. Format: JSON.\n\nBewertung: ";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SeedClient_CreatesWaits_SplitsPartialResults_RetriesTheFailed_AndExportsInChunks()
    {
        // Prompts over 80 tokens are answered 400 (a failure no retry mends): every fourth review is long.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = 80 });
        using var http = SeedHttp(server);
        var reviews = Enumerable.Range(0, 10).Select(i => (Id: $"review_{i}", Text: i % 4 == 0 ? string.Join(' ', Enumerable.Repeat("lang", 200)) : $"gut {i}")).ToList();
        var requests = reviews.Select(r => new Dictionary<string, string> { ["custom_id"] = r.Id, ["prompt"] = Template + r.Text }).ToList();

        // create_batch: its payload, a 200, and data["batch_id"].
        var batchId = await CreateBatchAsync(http, requests);
        // wait_for_completion: status["status"] until "completed", status.get("progress", 0) meanwhile.
        var result = await Poll.UntilAsync(() => GetBatchStatusAsync(http, batchId), status =>
        {
            Assert.Equal(JsonValueKind.Number, status.GetProperty("progress").ValueKind);
            return status.GetProperty("status").GetString() == "completed";
        }, cancellationToken: Ct);

        // main and AdaptiveBatchManager.flush: f"{result['cost_usd']:.4f}", result['duration_seconds'], result["batch_id"].
        Assert.Equal(JsonValueKind.Number, result.GetProperty("cost_usd").ValueKind);
        Assert.Equal(JsonValueKind.Number, result.GetProperty("duration_seconds").ValueKind);
        Assert.Equal(batchId, result.GetProperty("batch_id").GetString());

        // PartialBatchResult: batch_result.get("results", []), item.get("status") == "success".
        var items = result.GetProperty("results").EnumerateArray().ToList();
        var successful = items.Where(item => item.GetProperty("status").GetString() == "success").ToList();
        var failed = items.Where(item => item.GetProperty("status").GetString() != "success").ToList();
        Assert.Equal(reviews.Where(r => r.Text.StartsWith("gut", StringComparison.Ordinal)).Select(r => r.Id), successful.Select(item => item.GetProperty("custom_id").GetString()));
        Assert.All(successful, item => Assert.Equal(200, item.GetProperty("response").GetProperty("status_code").GetInt32()));
        // get_failed_requests: {"custom_id": item["custom_id"], "prompt": item.get("original_prompt")}.
        var failedRequests = failed.Select(item => new Dictionary<string, string>
        {
            ["custom_id"] = item.GetProperty("custom_id").GetString()!,
            ["prompt"] = item.GetProperty("original_prompt").GetString()!,
        }).ToList();
        Assert.Equal(
            requests.Where(r => r["custom_id"] is "review_0" or "review_4" or "review_8").Select(r => (r["custom_id"], r["prompt"])),
            failedRequests.Select(r => (r["custom_id"], r["prompt"])));
        // retry_failed: create_batch_with_retry(failed_requests) sends them again as a batch.
        var retryId = await CreateBatchAsync(http, failedRequests);
        Assert.NotEqual(batchId, retryId);

        // good_memory_handling: status["total_items"], then get_batch_chunk(batch_id, offset, CHUNK_SIZE)
        // until offset reaches it, on the paged results.
        var total = (await GetBatchStatusAsync(http, batchId)).GetProperty("total_items").GetInt64();
        var exported = new List<string?>();
        for (var offset = 0L; offset < total; offset += 4)
        {
            var chunk = await GetJsonAsync(http, $"batches/{batchId}/results?offset={offset}&limit=4");
            exported.AddRange(chunk.GetProperty("data").EnumerateArray().Select(line => line.GetProperty("custom_id").GetString()));
        }

        Assert.Equal(reviews.Select(r => r.Id), exported);

        // The OpenAI SDK still reads the same status, seed fields and all.
        var job = (BatchJob)await OpenAISdkTests.Client(server).GetBatchClient().GetBatchAsync(batchId, new RequestOptions { CancellationToken = Ct });
        Assert.Equal((batchId, "/v1/chat/completions"), (job.Id, job.Endpoint));
    }

    [Fact]
    public async Task SeedClient_OnAFailedBatch_ReadsWhyFromError_AndFileBatchesCarryNoResults()
    {
        await using var server = await RunningServer.StartAsync();
        using var http = SeedHttp(server);
        var good = BatchFiles.OpenAIChat(1)[0].Line;
        var refused = await CreateFileBatchAsync(server, [good, "{not json"]);
        var fine = await CreateFileBatchAsync(server, [good]);

        // wait_for_completion: status["status"] == "failed" raises with status.get('error', 'Unknown error').
        var failed = await Poll.UntilAsync(() => GetBatchStatusAsync(http, refused), s => s.GetProperty("status").GetString() == "failed", cancellationToken: Ct);
        var completed = await Poll.UntilAsync(() => GetBatchStatusAsync(http, fine), s => s.GetProperty("status").GetString() == "completed", cancellationToken: Ct);

        var error = failed.GetProperty("error").GetString();
        Assert.Contains("line 2: invalid_json_line", error, StringComparison.Ordinal);
        Assert.Equal("invalid_json_line", failed.GetProperty("errors").GetProperty("data")[0].GetProperty("code").GetString());
        Assert.Equal(JsonValueKind.Null, completed.GetProperty("error").ValueKind);
        // A file batch has its output file: its status leaves results out.
        Assert.False(completed.TryGetProperty("results", out _));
    }

    [Fact]
    public async Task SeedResults_AreLeftOutOfTheStatusOfABatchOfMoreThanAThousandRequests()
    {
        await using var server = await RunningServer.StartAsync();
        using var http = SeedHttp(server);
        var small = await CreateBatchAsync(http, Prompts(1000));
        var large = await CreateBatchAsync(http, Prompts(1001));

        await server.WaitForEndAsync(small);
        await server.WaitForEndAsync(large);

        Assert.Equal(1000, (await GetBatchStatusAsync(http, small)).GetProperty("results").GetArrayLength());
        Assert.False((await GetBatchStatusAsync(http, large)).TryGetProperty("results", out _));
    }

    private static List<Dictionary<string, string>> Prompts(int count) =>
        [.. Enumerable.Range(0, count).Select(i => new Dictionary<string, string> { ["custom_id"] = $"req_{i}", ["prompt"] = $"Analyze document {i} and extract key metrics" })];

    private static HttpClient SeedHttp(RunningServer server) => new() { BaseAddress = new Uri(server.BaseUrl, "v1/") };

    /// <summary>create_batch: POST {base_url}/batches with the key and its JSON payload; anything but 200 is an error.</summary>
    private static async Task<string> CreateBatchAsync(HttpClient http, List<Dictionary<string, string>> requests)
    {
        var payload = JsonSerializer.Serialize(new Dictionary<string, object> { ["requests"] = requests, ["model"] = "claude-sonnet-4.5", ["priority"] = "normal" });
        using var request = new HttpRequestMessage(HttpMethod.Post, "batches") { Content = new StringContent(payload, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", RunningServer.Key);
        using var response = await http.SendAsync(request, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True((int)response.StatusCode == 200, $"Batch creation failed: {(int)response.StatusCode} - {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("batch_id").GetString()!;
    }

    /// <summary>get_batch_status: GET {base_url}/batches/{batch_id} with the key.</summary>
    private static Task<JsonElement> GetBatchStatusAsync(HttpClient http, string batchId) => GetJsonAsync(http, $"batches/{batchId}");

    private static async Task<JsonElement> GetJsonAsync(HttpClient http, string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", RunningServer.Key);
        using var response = await http.SendAsync(request, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>A batch of an uploaded file (the OpenAI door), the only way a batch ends failed: its input refused.</summary>
    private static async Task<string> CreateFileBatchAsync(RunningServer server, string[] lines)
    {
        var file = await server.UploadAsync(lines);
        var (status, batch) = await server.PostAsync("/v1/batches", $$"""{"input_file_id":"{{file}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");
        Assert.Equal(200, status);
        return batch.GetProperty("id").GetString()!;
    }
}
