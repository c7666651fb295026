using Shepherd.Engine.Configuration;

namespace Shepherd.Testing;

/// <summary>A configuration file written to a fresh folder and loaded, as <c>--config</c> would.</summary>
public static class ConfigFiles
{
    public static ShepherdConfig Load(string json) => Load(json, ShepherdConfig.Load);

    /// <summary>Loads with <paramref name="load"/>: the server's configuration file reads the same text with its own section.</summary>
    public static TConfig Load<TConfig>(string json, Func<string, TConfig> load)
    {
        ArgumentNullException.ThrowIfNull(load);
        using var folder = new TempDirectory();
        var path = folder.File("shepherd.json");
        File.WriteAllText(path, json);
        return load(path);
    }
}
