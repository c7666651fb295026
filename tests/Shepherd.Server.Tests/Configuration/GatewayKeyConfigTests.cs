using Shepherd.Engine.Configuration;
using Shepherd.Server.Configuration;
using Shepherd.Testing;

namespace Shepherd.Server.Tests.Configuration;

public sealed class GatewayKeyConfigTests
{
    [Fact]
    public void AKey_CarriesItsHashScopesAndLimits()
    {
        var key = Assert.Single(ConfigFiles.Load("""
            {"server":{"gatewayKeys":[{"name":"ops","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
              "scopes":["read","admin"],"limits":{"requestsPerMinute":600,"openBatches":5,"queuedItems":100000,"maxFileBytes":1048576}}]}}
            """, ConfigFile.Load).Server!.GatewayKeys);

        Assert.Equal(("ops", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"), (key.Name, key.Sha256));
        Assert.Equal(["read", "admin"], key.Scopes!);
        Assert.Equal((600.0, 5L, 100000L, 1048576L), (key.Limits!.RequestsPerMinute, key.Limits.OpenBatches, key.Limits.QueuedItems, key.Limits.MaxFileBytes));
    }

    [Theory]
    [InlineData("""{"sha256":"abc"}""", "server.gatewayKeys[0].sha256: a SHA-256 is 64 hex digits")]
    [InlineData("""{"apiKey":"k","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}""", "give the key or its sha256, not both")]
    [InlineData("""{"apiKey":"k","scopes":["write"]}""", "server.gatewayKeys[0].scopes: 'write' is not a scope; use read, submit, admin.")]
    [InlineData("""{"apiKey":"k","limits":{"openBatches":0}}""", "server.gatewayKeys[0].limits.openBatches: must be at least 1.")]
    [InlineData("""{"apiKey":"k","limits":{"perDay":5}}""", "perDay")]
    [InlineData("""{"name":"x"}""", "the key is missing or empty")]
    public void ABadKeyEntry_IsAnErrorNamingIt(string entry, string message)
    {
        var error = Assert.Throws<ConfigException>(() => ConfigFiles.Load("""{"server":{"gatewayKeys":[""" + entry + "]}}", ConfigFile.Load));

        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheDoorsModes_AreReadByDoor()
    {
        var modes = ConfigFiles.Load("""{"server":{"modes":{"openai":"auto","anthropic":"native"}}}""", ConfigFile.Load).Server!.Modes!.ToModes();

        Assert.Equal(new Dictionary<Engine.Model.BatchDoor, Engine.Model.BatchMode> { [Engine.Model.BatchDoor.OpenAI] = Engine.Model.BatchMode.Auto, [Engine.Model.BatchDoor.Anthropic] = Engine.Model.BatchMode.Native }, modes);
    }

    [Fact]
    public void TheAnswerCache_IsOnWithItsSection_AndTakesItsLimits()
    {
        var cache = ConfigFiles.Load("""{"server":{"cache":{"maxMegabytes":2,"maxAgeDays":0.5,"sampled":false}}}""", ConfigFile.Load).Server!.Cache!.ToOptions();
        var off = ConfigFiles.Load("""{"server":{"cache":{"enabled":false}}}""", ConfigFile.Load).Server!.Cache!.ToOptions();

        Assert.Equal((2L << 20, TimeSpan.FromHours(12), false, null), (cache!.Limits.MaxBytes, cache.Limits.MaxAge, cache.ReplaySampled, cache.Path));
        Assert.Null(off);
    }

    [Fact]
    public void TheGatewaySection_SetsTheRealtimeDoor_AndLeavesWhatItOmits()
    {
        var options = new ServerOptions();
        ConfigFiles.Load("""{"server":{"gateway":{"callTimeoutSeconds":30,"collectSize":10,"collectSeconds":0.5}}}""", ConfigFile.Load).Server!.Gateway!.ApplyTo(options);

        Assert.Equal((TimeSpan.FromSeconds(30), 10, TimeSpan.FromSeconds(0.5), new ServerOptions().MaxCallBodyBytes), (options.CallTimeout, options.CallCollectSize, options.CallCollectAge, options.MaxCallBodyBytes));
    }

    [Theory]
    [InlineData("""{"gateway":{"collectSize":0}}""", "server.gateway.collectSize: must be at least 1.")]
    [InlineData("""{"gateway":{"collectSeconds":-1}}""", "server.gateway.collectSeconds: must be 0 or more.")]
    [InlineData("""{"gateway":{"timeout":5}}""", "timeout")]
    [InlineData("""{"gatewayKeys":[{"apiKey":"k","limits":{"dailyBudgetUsd":-1}}]}""", "dailyBudgetUsd: must be a number of US dollars, 0 or more.")]
    [InlineData("""{"modes":{"inline":"sometimes"}}""", "server.modes.inline: 'sometimes' is not a mode; use realtime, native, flex, auto.")]
    [InlineData("""{"modes":{"batch":"auto"}}""", "batch")]
    [InlineData("""{"cache":{"maxMegabytes":0}}""", "server.cache.maxMegabytes: must be more than 0")]
    [InlineData("""{"cache":{"maxAgeDays":-1}}""", "server.cache.maxAgeDays: must be more than 0")]
    [InlineData("""{"cache":{"path":" "}}""", "server.cache.path: must name a file.")]
    [InlineData("""{"cache":{"size":1}}""", "size")]
    public void ABadModeOrCacheSetting_IsAnErrorNamingIt(string server, string message)
    {
        var error = Assert.Throws<ConfigException>(() => ConfigFiles.Load("""{"server":""" + server + "}", ConfigFile.Load));

        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
