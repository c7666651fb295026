using Shepherd.Engine.Model;
using Shepherd.Server;
using Shepherd.Server.Tests;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>How a batch uses a Shepherd server's answer cache, asked for by the client (and refused by the APIs that keep none).</summary>
public sealed class CacheOptionTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    private static NewBatch Prompts(bool? cache = null, bool? sampled = null) => new()
    {
        Model = "gpt-4o-mini",
        Cache = cache,
        CacheSampled = sampled,
        Requests = [.. Enumerable.Range(0, 2).Select(i => BatchItem.FromPrompt($"r{i}", $"question {i}"))],
    };

    [Fact]
    public async Task TheCacheSwitches_ReachAShepherdServer_FromAnInlineBatchAndAFile()
    {
        await using var server = await RunningServer.StartAsync(tune: o => o.AnswerCache = new ServerCacheOptions());
        using var client = ClientTests.ClientOf(server);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(2));

        var off = await client.CreateBatchAsync(Prompts(cache: false), Ct);
        var unsampled = await client.CreateBatchAsync(Prompts(sampled: false), Ct);
        var unasked = await client.CreateBatchAsync(Prompts(), Ct);
        var fromFile = await client.CreateBatchFromFileAsync(file, new FileBatchOptions { Cache = false }, Ct);

        var stored = await Task.WhenAll(new[] { off, unsampled, unasked, fromFile }.Select(b => server.Store.GetBatchAsync(b.Id, Ct)));
        Assert.Equal([CacheUse.Off, CacheUse.Unsampled, CacheUse.All, CacheUse.Off], stored.Select(b => b!.Cache));
        Assert.Equal("false", fromFile.Metadata["shepherd_cache"]);
    }

    [Theory]
    [InlineData(BatchApi.OpenAI)]
    [InlineData(BatchApi.Anthropic)]
    public async Task TheCacheSwitches_AreRefusedByTheOpenAIAndAnthropicApis_BeforeAnythingIsSent(BatchApi api)
    {
        using var client = ClientTests.SendingNothing(api, out var handler);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), api == BatchApi.Anthropic ? BatchFiles.Anthropic(2) : BatchFiles.OpenAIChat(2));

        var inline = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchAsync(Prompts(cache: false), Ct));
        var fromFile = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(file, new FileBatchOptions { CacheSampled = true }, Ct));

        Assert.Contains("answer cache", inline.Message, StringComparison.Ordinal);
        Assert.Contains("answer cache", fromFile.Message, StringComparison.Ordinal);
        Assert.Empty(handler.Received);
    }
}
