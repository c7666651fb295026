using System.Net.Http.Headers;
using System.Text.Json;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>Calls the tests make to a <c>shepherd serve</c> child process.</summary>
internal static class ServerCalls
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A client for the server once it says where it listens, presenting <paramref name="key"/>.</summary>
    public static async Task<HttpClient> ConnectAsync(ShepherdProcess server, string key)
    {
        var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
        var http = new HttpClient { BaseAddress = new Uri(url) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    /// <summary>The answer's JSON; a failure status fails the test with the body.</summary>
    public static async Task<JsonElement> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Reads the batch until <paramref name="done"/> says so.</summary>
    public static Task<JsonElement> PollAsync(HttpClient http, string batchId, Func<JsonElement, bool> done) =>
        Poll.UntilAsync(async () =>
        {
            using var response = await http.GetAsync($"/v1/batches/{batchId}", Ct);
            return await ReadAsync(response);
        }, done, cancellationToken: Ct);
}
