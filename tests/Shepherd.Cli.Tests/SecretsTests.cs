using System.Text;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>An API key is sent to its provider and nowhere else: not to output, errors, logs or the state file.</summary>
public sealed class SecretsTests : IDisposable
{
    private const string Key = "sk-SHEPHERD-SECRET-3f9a1c77e2";
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private void AssertNowhere(ProcessResult result)
    {
        Assert.DoesNotContain(Key, result.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, result.Stderr, StringComparison.Ordinal);
        foreach (var file in Directory.GetFiles(_folder.Path, "*", SearchOption.AllDirectories))
        {
            var bytes = File.ReadAllBytes(file);
            Assert.False(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(Key)) >= 0, $"{Path.GetFileName(file)} holds the key");
        }
    }

    [Fact]
    public async Task AServer_NeverWritesItsUpstreamKeyOrItsGatewayKey_ToLogsAnswersFilesOrTheStore()
    {
        const string GatewayKey = "sk-GATEWAY-SECRET-81b2d4aa";
        await using var provider = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = Key, Error500Rate = 0.2 });
        var answers = new StringBuilder();
        using (var server = ShepherdProcess.Start(_folder.Path, [
            "serve", "--urls", "http://127.0.0.1:0", "--store", _folder.File("s.db"), "--gateway-key", GatewayKey, "--verbose",
            "--provider", "openai", "--base-url", new Uri(provider.BaseUrl, "v1").ToString(), "--api-key", Key, "--max-attempts", "2"]))
        {
            var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
            using var http = new HttpClient { BaseAddress = new Uri(url) };
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", GatewayKey);
            var requests = string.Join(",", Enumerable.Range(0, 20).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));
            using var created = await http.PostAsync("/v1/batches", new StringContent($$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), TestContext.Current.CancellationToken);
            var id = System.Text.Json.JsonDocument.Parse(await created.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).RootElement.GetProperty("id").GetString();
            var batch = await Poll.UntilAsync(() => http.GetStringAsync($"/v1/batches/{id}", TestContext.Current.CancellationToken), text => text.Contains("\"completed\"", StringComparison.Ordinal), TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
            answers.Append(batch);
            foreach (var path in new[] { $"/v1/batches/{id}/results?limit=100", "/v1/batches", "/v1/dashboard/batches", $"/v1/dashboard/batches/{id}", $"/v1/dashboard/batches/{id}/download?kind=results", $"/v1/dashboard/batches/{id}/download?kind=errors", "/metrics" })
            {
                answers.Append(await http.GetStringAsync(path, TestContext.Current.CancellationToken));
            }

            await server.SignalAsync("TERM");
            var stopped = await server.WaitAsync();
            Assert.Contains("retrying", stopped.Stderr, StringComparison.Ordinal);
            AssertNowhere(stopped);
            Assert.DoesNotContain(GatewayKey, stopped.Stdout + stopped.Stderr, StringComparison.Ordinal);
        }

        Assert.True(provider.Provider.Stats().ByStatus[200] > 0, "the key was not sent");
        Assert.DoesNotContain(Key, answers.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(GatewayKey, answers.ToString(), StringComparison.Ordinal);
        foreach (var file in Directory.GetFiles(_folder.Path, "*", SearchOption.AllDirectories))
        {
            Assert.False(File.ReadAllBytes(file).AsSpan().IndexOf(Encoding.UTF8.GetBytes(GatewayKey)) >= 0, $"{Path.GetFileName(file)} holds the gateway key");
        }
    }

    [Fact]
    public async Task AKeyOnTheCommandLine_IsSent_ButNeverWritten_EvenWithVerboseLogsAndRetries()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(40));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = Key, Error503Rate = 0.2, ResetRate = 0.1 });

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", Key, "--verbose", "--max-attempts", "2", "--progress", "plain");

        Assert.True(result.ExitCode is 0 or 3, result.ToString());
        Assert.True(server.Provider.Stats().ByStatus[200] > 0, "the key was not sent");
        Assert.Contains("retrying", result.Stderr, StringComparison.Ordinal);
        AssertNowhere(result);
    }

    [Fact]
    public async Task ARejectedKey_IsNotEchoedInTheErrors()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(5));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = "the-right-one" });

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", Key, "--verbose", "--progress", "none");

        Assert.True(result.ExitCode == 5, result.ToString());
        Assert.Contains("refused the API key", result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(_folder.File("in.errors.jsonl")));
        AssertNowhere(result);
    }

    [Fact]
    public async Task KeysFromTheEnvironment_AreUsed_AndNeverWritten()
    {
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), BatchFiles.Anthropic(10));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = Key });

        using var run = ShepherdProcess.Start(_folder.Path,
            ["run", input, "--base-url", server.BaseUrl.ToString(), "--verbose", "--progress", "none"],
            new Dictionary<string, string?> { ["ANTHROPIC_API_KEY"] = Key });
        var result = await run.WaitAsync();

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(10, server.Provider.Stats().ByStatus[200]);
        AssertNowhere(result);
    }
}
