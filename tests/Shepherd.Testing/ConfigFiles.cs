using Shepherd.Engine.Configuration;

namespace Shepherd.Testing;

/// <summary>A configuration file written to a fresh folder and loaded, as <c>--config</c> would.</summary>
public static class ConfigFiles
{
    public static ShepherdConfig Load(string json)
    {
        using var folder = new TempDirectory();
        var path = folder.File("shepherd.json");
        File.WriteAllText(path, json);
        return ShepherdConfig.Load(path);
    }
}
