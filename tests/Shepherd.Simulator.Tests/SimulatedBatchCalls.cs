using System.Text;
using System.Text.Json;

namespace Shepherd.Simulator.Tests;

/// <summary>Calls of the simulator's batch APIs, made in-process as a transport would make them.</summary>
internal sealed class SimulatedBatchCalls(SimulatedProvider simulator)
{
    public const string Chat = "/v1/chat/completions";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Sends a call (a path with its query, if any) and returns the status and the parsed answer.</summary>
    public async Task<(int Status, JsonElement Body)> SendAsync(string method, string pathAndQuery, string? body = null)
    {
        var response = await SendRawAsync(method, pathAndQuery, body);
        return (response.StatusCode, JsonDocument.Parse(response.Body).RootElement.Clone());
    }

    public Task<SimulatedResponse> SendRawAsync(string method, string pathAndQuery, string? body = null)
    {
        var query = pathAndQuery.IndexOf('?', StringComparison.Ordinal);
        return simulator.HandleAsync(new SimulatedRequest(
            method,
            query < 0 ? pathAndQuery : pathAndQuery[..query],
            body is null ? [] : Encoding.UTF8.GetBytes(body),
            ContentType: body is null ? null : "application/json",
            Query: query < 0 ? null : pathAndQuery[query..],
            BaseUrl: new Uri("http://sim.test/")), Ct);
    }

    /// <summary>Uploads the lines as a multipart file, as the SDKs and Shepherd's native runs do; returns the status and the File object.</summary>
    public async Task<(int Status, JsonElement Body)> UploadAsync(string purpose, params string[] lines)
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent(purpose), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(string.Concat(lines.Select(l => l + "\n")))), "file", "input.jsonl" },
        };
        var response = await simulator.HandleAsync(
            new SimulatedRequest("POST", "/v1/files", await form.ReadAsByteArrayAsync(Ct), ContentType: form.Headers.ContentType!.ToString()), Ct);
        return (response.StatusCode, JsonDocument.Parse(response.Body).RootElement.Clone());
    }

    /// <summary>Uploads the lines and creates a batch of them; returns the Batch object.</summary>
    public async Task<JsonElement> CreateAsync(params string[] lines)
    {
        var (uploaded, file) = await UploadAsync("batch", lines);
        Assert.Equal(200, uploaded);
        var (status, batch) = await SendAsync("POST", "/v1/batches", $$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"{{Chat}}","completion_window":"24h"}""");
        Assert.Equal(200, status);
        return batch;
    }

    public async Task<JsonElement> GetAsync(string path)
    {
        var (status, body) = await SendAsync("GET", path);
        Assert.Equal(200, status);
        return body;
    }

    /// <summary>The lines of a file's content, parsed.</summary>
    public async Task<List<JsonElement>> FileLinesAsync(JsonElement fileId)
    {
        var response = await SendRawAsync("GET", $"/v1/files/{fileId.GetString()}/content");
        Assert.Equal(200, response.StatusCode);
        return Lines(response.Body);
    }

    /// <summary>Creates an Anthropic message batch of the requests; returns the MessageBatch object.</summary>
    public async Task<JsonElement> CreateMessagesAsync(params string[] requests)
    {
        var (status, batch) = await SendAsync("POST", "/v1/messages/batches", $$"""{"requests":[{{string.Join(",", requests)}}]}""");
        Assert.Equal(200, status);
        return batch;
    }

    /// <summary>An ended message batch's results, by custom id.</summary>
    public async Task<Dictionary<string, JsonElement>> ResultsAsync(JsonElement batchId)
    {
        var response = await SendRawAsync("GET", $"/v1/messages/batches/{batchId.GetString()}/results");
        Assert.Equal(200, response.StatusCode);
        Assert.Equal("application/x-jsonl", response.ContentType);
        return Lines(response.Body).ToDictionary(l => l.GetProperty("custom_id").GetString()!, l => l.GetProperty("result"));
    }

    public static string ChatLine(string customId, string prompt, string url = Chat) => JsonSerializer.Serialize(new
    {
        custom_id = customId,
        method = "POST",
        url,
        body = new { model = "gpt-4o-mini", messages = new[] { new { role = "user", content = prompt } }, max_tokens = 20 },
    });

    public static string MessageRequest(string customId, string prompt) => JsonSerializer.Serialize(new
    {
        custom_id = customId,
        @params = new { model = "claude-haiku-4-5", max_tokens = 20, messages = new[] { new { role = "user", content = prompt } } },
    });

    public static List<JsonElement> Lines(byte[] content) =>
        [.. Encoding.UTF8.GetString(content).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement.Clone())];
}
