using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using System.Text.RegularExpressions;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Configuration;

/// <summary>
/// The engine's part of the configuration file (<c>shepherd.json</c>): upstreams with their
/// keys, weights, models and per-lane limits, prices, native batches, the store and the
/// cluster. Unknown properties are errors, so a typo never silently drops a limit. The server
/// adds its own section to the same file by deriving from this class
/// (<c>Shepherd.Server.Configuration.ConfigFile</c>), so the engine knows nothing of it.
/// </summary>
public partial class ShepherdConfig
{
    /// <summary>The upstreams requests go to.</summary>
    public List<UpstreamConfig> Upstreams { get; set; } = [];

    /// <summary>Prices by model, replacing or adding to the built-in table.</summary>
    public Dictionary<string, PriceConfig> Prices { get; set; } = [];

    /// <summary>How native batches are handed to the providers' batch APIs.</summary>
    public NativeConfig? Native { get; set; }

    /// <summary>
    /// Where <c>shepherd serve</c> keeps its state: the path of a SQLite file, or a PostgreSQL
    /// connection string (<c>postgres://user@host:5432/shepherd</c>, or <c>Host=…;Database=…</c>)
    /// that several nodes share.
    /// </summary>
    public string? Store { get; set; }

    /// <summary>How this node takes part among nodes that share a PostgreSQL store.</summary>
    public ClusterConfig? Cluster { get; set; }

    /// <summary>The built-in price table with this file's prices over it.</summary>
    public PriceTable PriceTable() =>
        Pricing.PriceTable.BuiltIn.With(Prices.Select(p => new ModelPrice(p.Key, p.Value.Input, p.Value.Output, p.Value.CachedInput, p.Value.BatchDiscount, p.Value.ContextTokens ?? Pricing.PriceTable.BuiltIn.Find(p.Key)?.ContextTokens)));

    /// <summary>Reads and checks a configuration file of the engine's sections only; errors name the file, the line and the property.</summary>
    public static ShepherdConfig Load(string path) => Load(path, ShepherdConfigJson.Default.ShepherdConfig);

    /// <summary>
    /// Reads and checks a configuration file as <typeparamref name="TConfig"/>, a configuration
    /// with more sections, read by its own <paramref name="type"/> so an unknown property is an
    /// error there too; errors name the file, the line and the property.
    /// </summary>
    protected static TConfig Load<TConfig>(string path, JsonTypeInfo<TConfig> type)
        where TConfig : ShepherdConfig
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{path}: cannot be read: {ex.Message}");
        }

        TConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(text, type);
        }
        catch (JsonException ex)
        {
            var where = ex.LineNumber is { } line ? $"line {line + 1}" : "?";
            throw new ConfigException($"{path}:{where}: {(ex.Path is { Length: > 1 } p ? p + ": " : "")}{FirstSentence(ex.Message)}");
        }

        if (config is null)
        {
            throw new ConfigException($"{path}: the file holds no configuration object.");
        }

        config.Check(path);
        return config;
    }

    /// <summary>
    /// Checks the sections a derived configuration adds, with <paramref name="path"/> leading
    /// each error; called after the upstreams are checked and before the cluster, where the
    /// server section has always been checked.
    /// </summary>
    protected virtual void CheckSections(string path)
    {
    }

    private void Check(string path)
    {
        for (var i = 0; i < Upstreams.Count; i++)
        {
            Upstreams[i].Check($"{path}: upstreams[{i}]");
        }

        CheckSections(path);
        Cluster?.Check($"{path}: cluster");
        if (Store is { } store && PostgresStoreOptions.Names(store))
        {
            try
            {
                new PostgresStoreOptions { ConnectionString = store }.Validated();
            }
            catch (ArgumentException ex)
            {
                throw new ConfigException($"{path}: store: {ex.Message.Split(" (Parameter", 2)[0]}");
            }
        }
        if (Native?.PollSeconds is <= 0)
        {
            throw new ConfigException($"{path}: native.pollSeconds: must be more than 0.");
        }

        if (Native?.CancelGraceSeconds is < 0)
        {
            throw new ConfigException($"{path}: native.cancelGraceSeconds: must be 0 or more.");
        }

        if (Native?.AssumedRequestsPerSecond is <= 0)
        {
            throw new ConfigException($"{path}: native.assumedRequestsPerSecond: must be more than 0.");
        }

        try
        {
            PriceTable();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigException($"{path}: prices: {ex.Message}");
        }
    }

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        var sentence = cut > 0 ? message[..cut] : message;
        // An unknown property is reported against the .NET type it was read into, a name that
        // says nothing to the person editing the file and changes when the code moves.
        return UnmappedMember().Replace(sentence, " to any setting.");
    }

    [GeneratedRegex(@" to any \.NET member contained in type '[^']*'\.")]
    private static partial Regex UnmappedMember();
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(ShepherdConfig))]
internal sealed partial class ShepherdConfigJson : JsonSerializerContext;
