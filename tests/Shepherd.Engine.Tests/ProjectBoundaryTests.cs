using System.Xml.Linq;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests;

/// <summary>
/// The projects' boundaries, read from their project files: the engine and the client stand alone,
/// the server is a door onto the engine and nothing else, and only the command line brings the
/// pieces together. A new project, reference or window onto internals is a decision to make here.
/// </summary>
public sealed class ProjectBoundaryTests
{
    private static readonly Dictionary<string, string[]> References = new(StringComparer.Ordinal)
    {
        ["Shepherd.Engine"] = [],
        ["Shepherd.Client"] = [],
        ["Shepherd.Simulator"] = [],
        ["Shepherd.Server"] = ["Shepherd.Engine"],
        ["Shepherd.Cli"] = ["Shepherd.Client", "Shepherd.Engine", "Shepherd.Server", "Shepherd.Simulator"],
    };

    /// <summary>Who sees each project's internals: its tests and the benches, and no project that ships.</summary>
    private static readonly Dictionary<string, string[]> InternalsSeenBy = new(StringComparer.Ordinal)
    {
        ["Shepherd.Engine"] = ["Shepherd.Bench", "Shepherd.Cli.Tests", "Shepherd.Engine.Tests", "Shepherd.Micro"],
        ["Shepherd.Client"] = ["Shepherd.Client.Tests"],
        ["Shepherd.Simulator"] = ["Shepherd.Simulator.Tests"],
        ["Shepherd.Server"] = ["Shepherd.Server.Tests"],
        ["Shepherd.Cli"] = ["Shepherd.Cli.Tests"],
    };

    public static TheoryData<string> Projects() => [.. References.Keys];

    [Fact]
    public void EveryProjectOfSrc_HasItsBoundariesWrittenHere()
    {
        var projects = Directory.GetDirectories(RepositoryFiles.Path("src")).Select(Path.GetFileName).Order(StringComparer.Ordinal);

        Assert.Equal(References.Keys.Order(StringComparer.Ordinal), projects);
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void AProject_ReferencesOnlyTheProjectsBelowIt(string project)
    {
        var referenced = Items(project, "ProjectReference").Select(include => Path.GetFileNameWithoutExtension(include.Replace('\\', '/')));

        Assert.Equal(References[project], referenced.Order(StringComparer.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void AProject_ShowsItsInternalsToTestsAndBenchesOnly(string project)
    {
        var attributes = Directory.EnumerateFiles(RepositoryFiles.Path("src", project), "*.cs", SearchOption.AllDirectories)
            .Where(file => !file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Where(file => File.ReadAllText(file).Contains("InternalsVisibleTo", StringComparison.Ordinal));

        Assert.Empty(attributes);
        Assert.Equal(InternalsSeenBy[project], Items(project, "InternalsVisibleTo").Order(StringComparer.Ordinal));
    }

    private static IEnumerable<string> Items(string project, string kind) =>
        XDocument.Load(RepositoryFiles.Path("src", project, project + ".csproj"))
            .Descendants(kind)
            .Select(item => (string?)item.Attribute("Include") ?? throw new InvalidOperationException($"{project}.csproj has a {kind} without Include."));
}
