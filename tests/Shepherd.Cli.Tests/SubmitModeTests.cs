using System.Text.Json;
using Shepherd.Server.Tests;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary><c>shepherd submit --deadline --mode</c>: the server is told both, and refuses a mode none of its upstreams serves.</summary>
public sealed class SubmitModeTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task SubmitModeNative_ReachesTheServer_WhichHandsTheBatchToItsProvider()
    {
        await using var provider = await RunningServer.StartAsync();
        await using var server = await RunningServer.StartAgainstAsync(provider);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));

        var run = await SubmitAsync(server, input, "--deadline", "48h", "--mode", "native", "--wait", "--json", "--poll-interval", "0.2");

        Assert.True(run.ExitCode == 0, run.ToString());
        var batch = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.Equal(3, batch.GetProperty("succeeded").GetInt64());
        // The client writes the window in its largest whole unit.
        var (_, stored) = await server.GetAsync($"/v1/batches/{batch.GetProperty("id").GetString()}");
        Assert.Equal(("native", "2d"), (stored.GetProperty("mode").GetString(), stored.GetProperty("completion_window").GetString()));
        var (_, jobs) = await provider.GetAsync("/v1/batches");
        Assert.Single(jobs.GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task SubmitModeNative_ToAServerWithoutABatchApi_ExitsWith2_SayingWhatIsMissing()
    {
        await using var server = await RunningServer.StartAsync();
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));

        var run = await SubmitAsync(server, input, "--mode", "native");

        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("no upstream with a native batch API serves", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SubmitNoCache_ReachesTheServer_AndToAServerWithoutACache_NoCacheSampledExitsWith2()
    {
        await using var cached = await RunningServer.StartAsync(tune: o => o.AnswerCache = new Server.ServerCacheOptions());
        await using var uncached = await RunningServer.StartAsync();
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(2));

        var off = await SubmitAsync(cached, input, "--no-cache", "--json");
        var refused = await SubmitAsync(uncached, input, "--no-cache-sampled");

        Assert.True(off.ExitCode == 0, off.ToString());
        var id = JsonDocument.Parse(off.Stdout).RootElement.GetProperty("id").GetString()!;
        Assert.Equal(Engine.Model.CacheUse.Off, (await cached.Store.GetBatchAsync(id, TestContext.Current.CancellationToken))!.Cache);
        Assert.True(refused.ExitCode == 2, refused.ToString());
        Assert.Contains("this server keeps no answer cache", refused.Stderr, StringComparison.Ordinal);
    }

    private Task<ProcessResult> SubmitAsync(RunningServer server, string input, params string[] more) =>
        ShepherdProcess.RunAsync(_folder.Path, ["submit", input, "--server", server.BaseUrl.ToString(), "--api-key", RunningServer.Key, .. more]);
}
