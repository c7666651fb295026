using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>Limits, several upstreams, the configuration file and completion windows, from the command line.</summary>
public sealed class UpstreamOptionsTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private static List<string?> CustomIds(string path) => [.. BatchFiles.ReadJsonl(path).Select(l => l.GetProperty("custom_id").GetString())];

    [Fact]
    public async Task ConfiguredLimits_KeepAProviderFromAnswering429()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(60));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { RequestsPerMinute = 1200, TokensPerMinute = 120_000 });

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "k", "--rpm", "1200", "--tpm", "120000", "--progress", "none");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(60, CustomIds(_folder.File("in.out.jsonl")).Count);
        Assert.InRange(server.Provider.Stats().ByStatus.GetValueOrDefault(429), 0, 3);
    }

    [Fact]
    public async Task SeveralUpstreams_OneDown_TheOthersServeEverything()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(40));
        await using var up = await Simulators.StartHttpAsync();
        var down = await Simulators.StartHttpAsync();
        var gone = new Uri(down.BaseUrl, "v1").ToString();
        await down.DisposeAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--upstream", gone, "--upstream", new Uri(up.BaseUrl, "v1") + "@2", "--api-key", "k", "--progress", "none");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(40, up.Provider.Stats().ByStatus[200]);
        Assert.Equal(40, CustomIds(_folder.File("in.out.jsonl")).Count);
    }

    [Fact]
    public async Task AConfigurationFile_NamesUpstreamsKeysAndLanes()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(30));
        await using var first = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = "key-one" });
        await using var second = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = "key-two" });
        File.WriteAllText(_folder.File("key-two.txt"), "key-two\n");
        var config = _folder.File("shepherd.json");
        File.WriteAllText(config, $$"""
            {
              // Two upstreams for one model, weighted 1:2, with a lane limit.
              "upstreams": [
                { "name": "one", "baseUrl": "{{new Uri(first.BaseUrl, "v1")}}", "apiKeyEnv": "SHEPHERD_TEST_KEY", "models": ["gpt-4.1-mini"] },
                { "name": "two", "baseUrl": "{{new Uri(second.BaseUrl, "v1")}}", "apiKeyFile": "{{_folder.File("key-two.txt")}}", "weight": 2,
                  "lanes": { "gpt-4.1-mini": { "rpm": 6000, "concurrency": 4 } } },
              ]
            }
            """);

        using var run = ShepherdProcess.Start(_folder.Path, ["run", input, "--config", config, "--progress", "none"],
            new Dictionary<string, string?> { ["SHEPHERD_TEST_KEY"] = "key-one" });
        var result = await run.WaitAsync();

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(30, first.Provider.Stats().ByStatus.GetValueOrDefault(200) + second.Provider.Stats().ByStatus.GetValueOrDefault(200));
        Assert.True(first.Provider.Stats().ByStatus.GetValueOrDefault(200) > 0);
        Assert.True(second.Provider.Stats().ByStatus.GetValueOrDefault(200) > 0);
        Assert.Contains("one, two", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "upstreams": [ { "baseUrl": "http://127.0.0.1:1/v1", "rmp": 5 } ] }""", "shepherd.json:line 1: $.upstreams[0].rmp: The JSON property 'rmp' could not be mapped")]
    [InlineData("""{ "uptreams": [] }""", "shepherd.json:line 1: $.uptreams: The JSON property 'uptreams' could not be mapped to any setting.")]
    [InlineData("{ \"upstreams\": [\n  { \"provider\": \"azure\" }\n] }", "upstreams[0].provider: 'azure' is not one of openai, anthropic")]
    [InlineData("{ \"upstreams\": [ { \"rpm\": 0 } ] }", "upstreams[0]: rpm, tpm, itpm and otpm must be at least 1")]
    [InlineData("{ \"upstreams\": [ { \"lanes\": { \"claude-haiku-4.5\": { \"otpm\": 0 } } } ] }", "upstreams[0].lanes.claude-haiku-4.5: rpm, tpm, itpm and otpm must be at least 1")]
    [InlineData("{ \"upstreams\": [ { \"apiKey\": \"a\", \"apiKeyEnv\": \"B\" } ] }", "give the key once")]
    [InlineData("{ \"upstreams\": [\n\n  { \"weight\": \"heavy\" }\n] }", "shepherd.json:line 3: $.upstreams[0].weight")]
    public async Task ABadConfigurationFile_IsRefused_SayingWhereAndWhy(string content, string message)
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(1));
        File.WriteAllText(_folder.File("shepherd.json"), content);

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--config", "shepherd.json");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AModelNoConfiguredUpstreamServes_IsRefusedBeforeSending()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(1));
        File.WriteAllText(_folder.File("shepherd.json"), """{ "upstreams": [ { "baseUrl": "http://127.0.0.1:1/v1", "models": ["claude-haiku-4.5"] } ] }""");

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--config", "shepherd.json");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("No upstream serves the model gpt-4.1-mini", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PastTheCompletionWindow_UnsentRequestsEndExpired()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(6));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromSeconds(2) });

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", new Uri(server.BaseUrl, "v1").ToString(), "--api-key", "k", "--concurrency", "1", "--completion-window", "1s", "--progress", "none");

        Assert.True(result.ExitCode == 3, result.ToString());
        var expired = BatchFiles.ReadJsonl(_folder.File("in.errors.jsonl"));
        // One request is in flight when the window ends (or none, on a machine too slow to send it in time).
        Assert.InRange(expired.Count, 4, 6);
        Assert.Contains("expired: ", result.Stdout, StringComparison.Ordinal);
        Assert.All(expired, line => Assert.Equal("batch_expired", line.GetProperty("error").GetProperty("code").GetString()));
        Assert.Equal(6, expired.Count + CustomIds(_folder.File("in.out.jsonl")).Count);
    }
}
